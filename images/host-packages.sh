#!/usr/bin/env bash
# Install the Debian packages the harness needs on the host (idempotent, no prompts).
# The guest's userland is copied from these host packages (harness/guest/image.py).
set -euo pipefail
PACKAGES=(
  qemu-system-x86 qemu-utils          # the guest
  busybox-static bash coreutils grep sed diffutils util-linux procps kmod  # guest userland
  dropbear-bin ncurses-base           # guest SSH server, terminal descriptions
  openssh-client                      # `ssh` into a guest kept by `klp-harness boot --keep`
  cpio zstd xz-utils                  # initramfs
  python3-venv                        # make venv
  make gcc-12 libelf-dev bc flex bison dwarves  # out-of-tree module builds (pahole for 6.12 BTF)
  mmdebstrap bubblewrap               # build roots for kernels newer than the host (7.x)
  libc6-dev                           # the static helper programs of the guest (images/*.c)
  chromium                            # the HTML report's tests open it headless
)
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  SUDO=(sudo)
fi
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing host packages: ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
