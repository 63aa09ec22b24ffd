#!/usr/bin/env bash
# Makes a local stand-in for the Dockerfiles' public base `python:3.11-slim` from Debian packages (mmdebstrap,
# Debian 12's Python 3.11), tagged localhost/python:3.11-slim in the tools/node buildah storage, where
# `FROM python:3.11-slim` finds it without a registry. Skipped when the image of this script's version is there.
# Like the official image: python and pip on the PATH, pip free to install (no EXTERNALLY-MANAGED marker), venv.
# The machine's CA bundle is added, for package traffic through a TLS-inspecting proxy.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/buildah.env"
key="$(sha256sum "$0" | cut -c1-12)"
if [[ "$("${BUILDAH[@]}" inspect --format '{{index .ImageAnnotations "im2txt.base-key"}}' localhost/python:3.11-slim 2>/dev/null)" == "$key" ]]; then
  exit 0
fi
command -v mmdebstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
echo "base-image: mmdebstrap (about a minute)" >&2
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
  --customize-hook='ln -sf /usr/bin/python3 "$1/usr/local/bin/python"; ln -sf /usr/bin/pip3 "$1/usr/local/bin/pip"' \
  --customize-hook='cat /etc/ssl/certs/ca-certificates.crt >> "$1/etc/ssl/certs/ca-certificates.crt"' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  bookworm "$tmp/rootfs.tar"
c=$("${BUILDAH[@]}" from scratch)
"${BUILDAH[@]}" add "$c" "$tmp/rootfs.tar" / >/dev/null
"${BUILDAH[@]}" config --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
  --cmd '["python3"]' --annotation "im2txt.base-key=$key" "$c"
"${BUILDAH[@]}" commit -q "$c" localhost/python:3.11-slim >/dev/null
"${BUILDAH[@]}" rm "$c" >/dev/null
