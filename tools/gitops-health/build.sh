#!/usr/bin/env bash
# Builds tools/gitops-health (kstatus, Flux's CEL status evaluator and Argo CD's Lua sandbox in one binary) once
# and prints its path. Cached like tools/envtest, keyed by go.mod, go.sum and main.go, in the same cache folder
# and with the same Go build cache (cold: ~2-5 min on 2 cores; warm: instant).
# Usage: build.sh        progress goes to stderr, the binary's path alone to stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" "$0" | sha256sum | cut -c1-12)"
out="${IM2TXT_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/im2txt-envtest}/gitops-health-$key"
bin="$out/gitops-health"
if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || { echo "gitops-health: 'go' is not on PATH; it builds tools/gitops-health (Go 1.26)" >&2; exit 1; }
  mkdir -p "$out"
  echo "gitops-health: building (cold: a few minutes; warm go cache: seconds)" >&2
  start=$SECONDS
  tmp="$(mktemp "$out/.build.XXXXXX")"
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" .) >&2
  mv "$tmp" "$bin"   # atomic: a half-built binary never looks complete
  echo "gitops-health: built in $((SECONDS - start)) s" >&2
fi
echo "$bin"
