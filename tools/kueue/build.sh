#!/usr/bin/env bash
# Builds Kueue's manager (sigs.k8s.io/kueue/cmd/kueue, the release pinned in go.mod here) once and prints the folder
# that holds it: kueue (the binary), crds/ (the release's CustomResourceDefinitions) and webhook/ (its webhook
# manifests, for the paths the tier registers by URL). Cached like tools/envtest, keyed by go.mod, go.sum and this
# script, in the same cache folder and with the same Go build cache (cold: 10-20 min on 2 cores; warm: instant).
# Usage: build.sh        progress goes to stderr, the folder's path alone to stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
key="$(cat "$here/go.mod" "$here/go.sum" "$0" | sha256sum | cut -c1-12)"
out="${IM2TXT_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/im2txt-envtest}/kueue-$key"
if [[ ! -x "$out/kueue" ]]; then
  command -v go >/dev/null || { echo "kueue: 'go' is not on PATH; it builds Kueue from tools/kueue/go.mod (Go 1.26)" >&2; exit 1; }
  version="$(cd "$here" && go list -m -f '{{.Version}}' sigs.k8s.io/kueue)"
  src="$(cd "$here" && go mod download -json sigs.k8s.io/kueue | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  mkdir -p "$out"
  echo "kueue: building $version (cold: 10-20 min on 2 cores; warm go cache: seconds)" >&2
  start=$SECONDS
  rm -rf "$out/crds" "$out/webhook"
  cp -r "$src/config/components/crd/bases" "$out/crds"
  cp -r "$src/config/components/webhook" "$out/webhook"
  chmod -R u+w "$out/crds" "$out/webhook"   # the module cache is read-only; the cache folder must stay removable
  tmp="$(mktemp "$out/.build.XXXXXX")"
  # The version as Kueue's own Makefile stamps a release (the manager logs it at start).
  (cd "$here" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$version" \
    -o "$tmp" sigs.k8s.io/kueue/cmd/kueue) >&2
  mv "$tmp" "$out/kueue"   # atomic, and last: a half-built folder never looks complete
  echo "kueue: built in $((SECONDS - start)) s" >&2
fi
echo "$out"
