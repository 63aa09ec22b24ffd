#!/usr/bin/env bash
# Prints a KUBEBUILDER_ASSETS folder for another Kubernetes minor than build.sh's: kube-apiserver and
# kube-controller-manager built from the module in tools/envtest/kube-<MINOR>/ (its go.mod names the release),
# etcd and etcdctl from tools/etcd and kubectl from the project's virtualenv, as build.sh does.
# For `make test-k8s-versions`.
# Usage: minor.sh MINOR [VENV]   e.g. minor.sh 1.29      progress goes to stderr, the folder alone to stdout.
set -euo pipefail
minor=${1:?usage: minor.sh MINOR [VENV]}
here="$(cd "$(dirname "$0")" && pwd)"
module="$here/kube-$minor"
[[ -f "$module/go.mod" ]] || { echo "envtest: no module for Kubernetes $minor (expected $module/go.mod)" >&2; exit 1; }
venv="${2:-$here/../../.venv}"
version="$(awk '$1 == "k8s.io/kubernetes" {print $2; exit} $1 == "require" && $2 == "k8s.io/kubernetes" {print $3; exit}' \
  "$module/go.mod")"
[[ "$version" == v1.* ]] || { echo "envtest: $module/go.mod does not require k8s.io/kubernetes" >&2; exit 1; }
key="$(cat "$module/go.mod" "$module/go.sum" "$0" | sha256sum | cut -c1-12)"
out="${IM2TXT_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/im2txt-envtest}/$version-$key"
mkdir -p "$out"
for b in kube-apiserver kube-controller-manager; do
  [[ -x "$out/$b" ]] && continue
  command -v go >/dev/null || { echo "envtest: 'go' is not on PATH; it builds $b $version" >&2; exit 1; }
  # The version the binaries report (/version): the operator checks it at start.
  major="${version#v}"; major="${major%%.*}"; minor_n="${version#v*.}"; minor_n="${minor_n%%.*}"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor_n -X $pkg.gitTreeState=clean"
  done
  echo "envtest: building $b $version (cold: ~10 min on 2 cores)" >&2
  start=$SECONDS
  (cd "$module" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/.$b.tmp" "k8s.io/kubernetes/cmd/$b") >&2
  mv "$out/.$b.tmp" "$out/$b"   # atomic: a half-built binary never looks complete
  echo "envtest: built $b in $((SECONDS - start)) s" >&2
done
etcd_dir="$("$here/../etcd/build.sh")"
ln -sf "$etcd_dir/etcd" "$out/etcd"
ln -sf "$etcd_dir/etcdctl" "$out/etcdctl"
ln -sf "$(realpath "$venv/bin/kubectl")" "$out/kubectl"
echo "$out"
