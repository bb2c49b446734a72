#!/usr/bin/env bash
# Build the local base image for TerminalBench's docker backend without any image registry:
# debootstrap a minimal Debian (from Debian's package mirror) and `docker import` it. It stands
# in for Terminal-Bench's images (python-3-13, ubuntu-24-04, ...): python3 (as `python` too)
# with pip, venv and pytest, gcc/make, git, curl; `pip install` works as in the official python
# images (no PEP 668 lock). Python is Debian's (3.11 on bookworm), not 3.13.
#
#   scripts/build_tb_base_image.sh [TAG]      (default tag: r2v-tb-base:latest)
#
# Honours DOCKER_HOST. Needs root (debootstrap) and installs debootstrap if it is missing.
set -euo pipefail
TAG="${1:-r2v-tb-base:latest}"
SUITE="${R2V_TB_SUITE:-bookworm}"
# Bump with every change to what the image holds: ensure_base_image rebuilds an older one.
R2V_TB_BASE_VERSION=3
MIRROR="${R2V_TB_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3,python3-pip,python3-venv,python-is-python3,python3-pytest,curl,git,gcc,make,libc6-dev,binutils,ca-certificates,procps,coreutils,findutils,grep,sed,gawk,tar,gzip"

if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
ROOTFS="$(mktemp -d /tmp/r2v-tb-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap $SUITE into $ROOTFS ..." >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >/dev/null
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
# Trust what the host trusts (a proxy's own CA included), so a task's `RUN pip install` at build
# time reaches the registries the host reaches; kept through later update-ca-certificates runs.
HOST_CA=/etc/ssl/certs/ca-certificates.crt
if [ -f "$HOST_CA" ]; then
    mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
    cp "$HOST_CA" "$ROOTFS/usr/local/share/ca-certificates/r2v-host-trust.crt"
    cp "$HOST_CA" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
fi
mkdir -p "$ROOTFS/app"
tar -C "$ROOTFS" -c . | docker import \
    --change 'WORKDIR /app' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' --change "LABEL r2v.tb-base=$R2V_TB_BASE_VERSION" - "$TAG" >/dev/null
echo "built $TAG" >&2
