#!/usr/bin/env bash
# Makes the local base image, for machines that cannot pull from a container registry:
# a minimal Debian bookworm (debootstrap, minbase) with Python 3.11, venv, CA certificates, tini
# and the OpenMP runtime (llama.cpp's CPU kernels need it), imported with `docker import`.
# It is what `python:3.11-slim` gives a machine with a registry, as far as our Dockerfiles care.
#
# usage: docker/base-os.sh [IMAGE]     (default dynamo-py/base-os:bookworm)
# env:   DEBIAN_MIRROR (default: debootstrap's own), REBUILD=1 to rebuild an existing image.
set -euo pipefail

IMAGE="${1:-dynamo-py/base-os:bookworm}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$HERE/.build/base-os"
PACKAGES="python3,python3-venv,ca-certificates,tini,libgomp1"

if [[ "${REBUILD:-0}" != 1 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "base-os: $IMAGE exists (REBUILD=1 to make it again)"
    exit 0
fi
if [[ $EUID -ne 0 ]]; then
    echo "base-os: debootstrap needs root; run this script as root (or with sudo)" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null; then
    echo "base-os: installing debootstrap"
    apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
fi

rm -rf "$WORK"
mkdir -p "$WORK"
ROOTFS="$WORK/rootfs"
echo "base-os: debootstrap bookworm (minbase + $PACKAGES) ..."
# shellcheck disable=SC2086  # DEBIAN_MIRROR is one optional word
nice -n 10 debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOTFS" ${DEBIAN_MIRROR:-} \
    >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }

# Slim it the way the Debian slim images are slimmed: no apt lists, caches, docs or man pages.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/var/log/*.log "$ROOTFS"/tmp/*

echo "base-os: docker import -> $IMAGE"
tar -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap bookworm minbase + $PACKAGES" \
    - "$IMAGE" >/dev/null
rm -rf "$ROOTFS"
docker run --rm "$IMAGE" python3 -c 'import sys, venv, ssl; print("base-os: python", sys.version.split()[0])'
