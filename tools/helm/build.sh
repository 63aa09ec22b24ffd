#!/usr/bin/env bash
# Builds helm (helm.sh/helm/v4/cmd/helm, the release pinned in go.mod here) once and prints its path. Cached like
# tools/envtest, keyed by go.mod, go.sum and this script, in the same cache folder and with the same Go build
# cache (cold: 3.5-5 min on 2 cores, 1.2 GB of Go build cache; warm: instant).
# Usage: build.sh        progress goes to stderr, the binary's path alone to stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
key="$(cat "$here/go.mod" "$here/go.sum" "$0" | sha256sum | cut -c1-12)"
out="${IM2TXT_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/im2txt-envtest}/helm-$key"
bin="$out/helm"
if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || { echo "helm: 'go' is not on PATH; it builds helm from tools/helm/go.mod (Go 1.26)" >&2; exit 1; }
  version="$(cd "$here" && go list -m -f '{{.Version}}' helm.sh/helm/v4)"
  mkdir -p "$out"
  echo "helm: building $version (cold: a few minutes; warm go cache: seconds)" >&2
  start=$SECONDS
  tmp="$(mktemp "$out/.build.XXXXXX")"
  # The version as helm's own Makefile stamps a release (`helm version` prints it; the chart's kubeVersion check
  # uses the client-go version of go.sum, read from the build info).
  (cd "$here" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$version -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
    -o "$tmp" helm.sh/helm/v4/cmd/helm) >&2
  mv "$tmp" "$bin"   # atomic: a half-built binary never looks complete
  echo "helm: built in $((SECONDS - start)) s" >&2
fi
echo "$bin"
