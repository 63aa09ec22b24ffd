#!/usr/bin/env bash
# Writes the pod sandbox ("pause") image as an OCI archive: a static Go program that sleeps until SIGTERM/SIGINT,
# committed with buildah from scratch. Usage: pause.sh OUT.tar
set -euo pipefail
out=${1:?usage: pause.sh OUT.tar}
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/main.go" <<'GO'
// pause: the pod sandbox's process; it holds the pod's namespaces until it is told to stop.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
GO
(cd "$tmp" && printf 'module pause\n\ngo 1.21\n' >go.mod && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o pause .)
source "$here/buildah.env"
c=$("${BUILDAH[@]}" from scratch)
"${BUILDAH[@]}" copy "$c" "$tmp/pause" /pause >/dev/null
"${BUILDAH[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$c"
"${BUILDAH[@]}" commit -q "$c" localhost/im2txt/pause:1 >/dev/null
"${BUILDAH[@]}" rm "$c" >/dev/null
rm -f "$out.part"
"${BUILDAH[@]}" push -q localhost/im2txt/pause:1 "oci-archive:$out.part:localhost/im2txt/pause:1"
mv "$out.part" "$out"
