#!/usr/bin/env bash
# Builds the operator and trainer images from the project's Dockerfiles with buildah (no Docker engine, no
# registry; `make images` with the tools/node storage and the local base of base-image.sh) and writes each as an
# OCI archive in the cache. Keyed by content: an image is rebuilt only when its Dockerfile, the files it copies or
# the TensorFlow package change. Prints one archive path per line (operator, trainer).
# Usage: images.sh [TENSORFLOW]     (default tensorflow-cpu==2.21.0: the tests train on CPU)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"; root="$(cd "$here/../.." && pwd)"
source "$here/buildah.env"
tensorflow="${1:-tensorflow-cpu==2.21.0}"
registry=localhost/im2txt; tag=0.1.0
cache="${IM2TXT_NODE_CACHE:-$HOME/.cache/im2txt-node}/archives"; mkdir -p "$cache"
bash "$here/base-image.sh"
key_of() {  # the Dockerfile, every file of the folders it copies from, and the build argument
  local dockerfile=$1; shift
  (cd "$root" && { echo "$tensorflow"; cat "$dockerfile" "$dockerfile.dockerignore" "$here/base-image.sh";
    git ls-files -co --exclude-standard -- "$@" | grep -v -e __pycache__ -e '\.pyc$' \
      | sort | while read -r f; do [[ -f "$f" ]] && sha256sum "$f"; done; } | sha256sum | cut -c1-16)
}
for name in operator trainer; do
  if [[ $name == operator ]]; then copied=(requirements operator trainer/im2txt_storage); else copied=(requirements trainer); fi
  archive="$cache/$name.oci.tar"; key="$(key_of "$name/Dockerfile" "${copied[@]}")"
  if [[ -f "$archive" && "$(cat "$cache/$name.key" 2>/dev/null)" == "$key" ]]; then echo "$archive"; continue; fi
  echo "images: building $name (key $key)" >&2
  start=$SECONDS
  # No layer cache: on vfs every cached step is a full copy of the image (an operator rebuild kept ~7 GB more, and
  # took 237 s against 148 s without). Nothing but the tagged images is kept (rmi --prune below).
  make -s -C "$root" images-"$name" DOCKER="${BUILDAH[*]}" BUILD_FLAGS="--isolation chroot --pull=never --layers=false" \
    TENSORFLOW="$tensorflow" IMAGE_REGISTRY="$registry" TAG="$tag" >&2
  rm -f "$archive.part"
  "${BUILDAH[@]}" push -q "$registry/im2txt-$name:$tag" "oci-archive:$archive.part:$registry/im2txt-$name:$tag" >&2
  mv "$archive.part" "$archive"; echo "$key" >"$cache/$name.key"
  # Then the image this tag named before and its build stage go, with the working containers that interrupted
  # builds left (they pin their images). Builds here run one at a time (make cluster-images); best effort.
  { "${BUILDAH[@]}" rm --all && "${BUILDAH[@]}" rmi --prune; } >/dev/null || echo "images: could not prune" >&2
  echo "images: $name built in $((SECONDS - start)) s" >&2
  echo "$archive"
done
