#!/usr/bin/env bash
# Build the local base image for TerminalBench's docker backend without any image registry:
# debootstrap a minimal Debian (from Debian's package mirror) and `docker import` it.
#
#   scripts/build_tb_base_image.sh [TAG]      (default tag: r2v-tb-base:latest)
#
# Honours DOCKER_HOST. Needs root (debootstrap) and installs debootstrap if it is missing.
set -euo pipefail
TAG="${1:-r2v-tb-base:latest}"
SUITE="${R2V_TB_SUITE:-bookworm}"
MIRROR="${R2V_TB_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3,python3-pytest,git,gcc,make,libc6-dev,binutils,ca-certificates,procps,coreutils,findutils,grep,sed,gawk,tar,gzip"

if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
ROOTFS="$(mktemp -d /tmp/r2v-tb-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap $SUITE into $ROOTFS ..." >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >/dev/null
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
mkdir -p "$ROOTFS/app"
tar -C "$ROOTFS" -c . | docker import \
    --change 'WORKDIR /app' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$TAG" >/dev/null
echo "built $TAG" >&2
