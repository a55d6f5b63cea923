#!/usr/bin/env bash
# Install the Debian packages the harness needs on the host (idempotent, no prompts).
set -euo pipefail
PACKAGES=(
  qemu-system-x86 qemu-utils          # the guest
  busybox-static kmod procps util-linux bash coreutils dropbear-bin  # guest userland
  cpio zstd xz-utils                  # initramfs
  make gcc-12 libelf-dev bc flex bison dwarves  # out-of-tree module builds (pahole for 6.12 BTF)
)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
