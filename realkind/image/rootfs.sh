#!/bin/bash
# rootfs.sh NAME PACKAGES_FILE: debootstraps Debian (minbase + packages) and `docker import`s it as
# realkind/NAME-rootfs:<key>, key = hash of suite, mirror and package list. Prints the tag.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../versions.env"
CACHE=${REALKIND_CACHE:-/var/cache/realkind}
MIRROR=${REALKIND_DEBIAN_MIRROR:-http://deb.debian.org/debian}
name=$1; pkgfile=$2
pkgs=$(sed -e 's/#.*//' "$pkgfile" | xargs | tr ' ' ',')
key=$(printf '%s\n' "rootfs-v1" "$DEBIAN_SUITE" "$MIRROR" "$pkgs" | sha256sum | cut -c1-12)
tag="realkind/$name-rootfs:$key"
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi
mkdir -p "$CACHE/debs" "$CACHE/logs"
tmp=$(mktemp -d "$CACHE/rootfs-$name.XXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "rootfs $name: debootstrap $DEBIAN_SUITE (+$(echo "$pkgs" | tr ',' ' ' | wc -w) packages)" >&2
timeout 1200 debootstrap --variant=minbase --cache-dir="$CACHE/debs" --include="$pkgs" \
  "$DEBIAN_SUITE" "$tmp/root" "$MIRROR" > "$CACHE/logs/debootstrap-$name.log" 2>&1 \
  || { tail -20 "$CACHE/logs/debootstrap-$name.log" >&2; exit 1; }
rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"* 2>/dev/null || true
tar -C "$tmp/root" -c . | docker import -c 'LABEL dev.kindfix.realkind=1' - "$tag" >/dev/null
echo "rootfs $name: $tag in $(( $(date +%s) - start )) s" >&2
echo "$tag"
