"""What a guest is (`GuestConfig`) and the QEMU command line that boots it.

The config is a small frozen dataclass so it can be compared, logged and reused;
everything that changes from boot to boot (the SSH port, the key, the monitor
socket) is a separate `BootSpec`.  The command line is assembled from one small
function per concern, each returning an argument list, so adding a device or, later,
`-incoming` for snapshot restore means adding one function.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.kernels import KernelProfile

QEMU = "qemu-system-x86_64"
GUEST_SSH_PORT = 22


@dataclass(frozen=True)
class GuestConfig:
    """A guest to boot: kernel, initramfs and machine size."""

    kernel: Path  # bzImage
    initrd: Path  # from harness.guest.image
    name: str = "guest"  # profile name, used in log file names and messages
    release: str = ""  # expected `uname -r` (checked after boot when set)
    memory_mib: int = 1024
    cpus: int = 1  # one CPU: livepatch transitions settle in their first attempt
    accel: str | None = None  # "kvm" or "tcg"; None probes (cached per machine)
    append: tuple[str, ...] = ()  # extra kernel command-line parameters
    log_dir: Path | None = None  # keep the console log here; None: in the temp dir
    boot_timeout: float = 240.0  # TCG on a loaded two-core machine

    @classmethod
    def for_profile(
        cls, profile: KernelProfile, log_dir: Path | None = None, **changes: Any
    ) -> GuestConfig:
        """The config for a kernel profile, building its initramfs if needed."""
        from harness.guest.image import ensure_image

        config = cls(
            kernel=profile.bzimage,
            initrd=ensure_image(profile),
            name=_file_safe(profile.name),
            release=profile.release,
            log_dir=log_dir,
        )
        return dataclasses.replace(config, **changes)


@dataclass(frozen=True)
class BootSpec:
    """Per-boot values: chosen fresh for every QEMU started."""

    ssh_port: int  # host port forwarded to the guest's SSH, on 127.0.0.1 only
    monitor_socket: Path  # HMP monitor (stop/migrate/quit), for snapshot support
    ssh_pubkey: str  # base64 blob of the ed25519 key the guest authorizes for root
    accel_args: tuple[str, ...]  # from harness.guest.accel


def kernel_cmdline(config: GuestConfig, boot: BootSpec) -> str:
    """The guest kernel's command line.

    `panic=-1` reboots at once on panic and `-no-reboot` turns the reboot into QEMU's
    exit, so a panicked guest ends in milliseconds.  `printk.time=1` gives every
    kernel line the timestamp the crash watcher keys on; `printk.devkmsg=on` stops
    the kernel from rate-limiting the lines the runner writes to /dev/kmsg.  Unknown
    `key=value` parameters (klp_key) reach /init as environment variables."""
    params = [
        "console=ttyS0,115200",
        "panic=-1",
        "printk.time=1",
        "printk.devkmsg=on",
        f"klp_key={boot.ssh_pubkey}",
        *config.append,
    ]
    return " ".join(params)


def machine_args(config: GuestConfig, boot: BootSpec) -> list[str]:
    return [
        *boot.accel_args,
        "-machine", "pc",
        "-m", str(config.memory_mib),
        "-smp", str(config.cpus),
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-no-reboot",
    ]  # fmt: skip


def boot_args(config: GuestConfig, boot: BootSpec) -> list[str]:
    return [
        "-kernel", str(config.kernel),
        "-initrd", str(config.initrd),
        "-append", kernel_cmdline(config, boot),
    ]  # fmt: skip


def console_args() -> list[str]:
    """The serial port on QEMU's stdio (a pty under pexpect).  `signal=off`: a ^C
    typed on the console goes to the guest instead of killing QEMU."""
    return ["-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console"]


def network_args(boot: BootSpec) -> list[str]:
    """User networking, isolated (`restrict=on`: no traffic beyond the forwarded
    port), SSH reachable on 127.0.0.1 only."""
    netdev = f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{boot.ssh_port}-:{GUEST_SSH_PORT}"
    return ["-netdev", netdev, "-device", "virtio-net-pci,netdev=net0"]


def monitor_args(boot: BootSpec) -> list[str]:
    return ["-monitor", f"unix:{boot.monitor_socket},server=on,wait=off"]


def qemu_args(config: GuestConfig, boot: BootSpec) -> list[str]:
    """The full QEMU argument list (argv[0] included)."""
    return [
        QEMU,
        *machine_args(config, boot),
        *boot_args(config, boot),
        *console_args(),
        *network_args(boot),
        *monitor_args(boot),
    ]


def _file_safe(name: str) -> str:
    """A profile name usable in file names ("dir:/x/y" -> "dir-x-y")."""
    safe = "".join(c if c.isalnum() or c in ".-_" else "-" for c in name)
    return safe.strip("-")[:80] or "guest"
