"""What a guest is: `GuestConfig`, a small frozen dataclass so it can be compared,
logged, reused and made part of a snapshot's key.  Everything that changes from
boot to boot (the SSH port, the key, the sockets) is a `BootSpec`
(harness.guest.qemu), which turns both into QEMU's command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.files import file_safe
from harness.guest.image import ensure_image
from harness.kernel.profiles import KernelProfile

# Checks that stop a corrupted heap where it happens instead of scenarios later, all
# run-time options of Debian's kernels: SLUB sanity checks, red zones, poisoning and
# owner tracking (a double free or a use after free of a kmalloc object is reported
# as "BUG <cache> ...: Object already free" etc.), freed pages zeroed (which also
# keeps snapshots small), and KFENCE sampling where the kernel has it (6.12; an
# unknown parameter is ignored).  page_poison=1 was measured and left out: it fills
# all free memory, so a snapshot grows from ~120 MB to ~1 GB.
MEMORY_CHECKS = ("slub_debug=FZPU", "init_on_free=1", "kfence.sample_interval=100")
GUEST_SSH_PORT = 22
DEFAULT_MEMORY_MIB = 512


@dataclass(frozen=True)
class GuestConfig:
    """A guest to boot: kernel, initramfs and machine size."""

    kernel: Path  # bzImage
    initrd: Path  # from harness.guest.image
    name: str = "guest"  # profile name, used in log file names and messages
    release: str = ""  # expected `uname -r` (checked after boot when set)
    memory_mib: int = DEFAULT_MEMORY_MIB  # ~150 MB used with the checks on; less to save and resume
    cpus: int = 1  # one CPU: livepatch transitions settle in their first attempt
    accel: str | None = None  # "kvm" or "tcg"; None probes (cached per machine)
    append: tuple[str, ...] = ()  # extra kernel command-line parameters
    qemu_opts: tuple[str, ...] = ()  # extra QEMU arguments, last on its command line
    memory_checks: bool = True  # MEMORY_CHECKS on the kernel command line
    log_dir: Path | None = None  # keep the console log here; None: in the temp dir
    boot_timeout: float = 240.0  # TCG on a loaded two-core machine

    @classmethod
    def for_profile(
        cls, profile: KernelProfile, log_dir: Path | None = None, **changes: Any
    ) -> GuestConfig:
        """The config for a kernel profile, building its initramfs if needed."""
        config = cls(
            kernel=profile.bzimage,
            initrd=ensure_image(profile),
            name=file_safe(profile.name),
            release=profile.release,
            log_dir=log_dir,
        )
        return dataclasses.replace(config, **changes)
