#!/usr/bin/env bash
# Builds etcd and etcdctl (the release pinned in go.mod here) once and prints the folder that holds both. Cached
# like tools/envtest, keyed by go.mod, go.sum, main.go and this script (cold: ~2 min on 2 cores; warm: instant).
# Usage: build.sh        progress goes to stderr, the folder alone to stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" "$0" | sha256sum | cut -c1-12)"
out="${IM2TXT_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/im2txt-envtest}/etcd-$key"
if [[ ! -x "$out/etcd" || ! -x "$out/etcdctl" ]]; then
  command -v go >/dev/null || { echo "etcd: 'go' is not on PATH; it builds etcd from tools/etcd/go.mod (Go 1.26)" >&2; exit 1; }
  version="$(cd "$here" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
  mkdir -p "$out"
  echo "etcd: building etcd and etcdctl $version (cold: ~2 min; warm go cache: seconds)" >&2
  start=$SECONDS
  tmp="$(mktemp -d "$out/.build.XXXXXX")"
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" . \
    && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/etcdctl" go.etcd.io/etcd/etcdctl/v3) >&2
  mv "$tmp/etcdctl" "$out/etcdctl"; mv "$tmp/etcd" "$out/etcd"   # atomic: a half-built binary never looks complete
  rmdir "$tmp"
  echo "etcd: built in $((SECONDS - start)) s" >&2
fi
echo "$out"
