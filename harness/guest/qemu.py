"""QEMU's command line for a guest: its config (harness.guest.config) and a `BootSpec`.

The command line is assembled from one small function per concern, each returning
an argument list.  A guest restored from a snapshot gets the same command line as
the guest that was saved, plus `-incoming`: only host-side values (port, socket
paths) may differ.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from harness.guest.channel import CMD_PORT, ERR_PORT
from harness.guest.config import GUEST_SSH_PORT, MEMORY_CHECKS, GuestConfig
from harness.guest.errors import GuestError

QEMU = "qemu-system-x86_64"


@dataclass(frozen=True)
class BootSpec:
    """Per-boot values: chosen fresh for every QEMU started."""

    ssh_port: int  # host port forwarded to the guest's SSH, on 127.0.0.1 only
    sockets: Path  # directory of QEMU's unix sockets (QMP, command channel ports)
    ssh_pubkey: str  # base64 blob of the ed25519 key the guest authorizes for root
    accel_args: tuple[str, ...]  # from harness.guest.accel
    incoming: int | None = None  # an open fd of a saved guest state, to resume from

    @property
    def qmp_socket(self) -> Path:
        return self.sockets / "qmp.sock"

    @property
    def cmd_socket(self) -> Path:
        return self.sockets / "cmd.sock"

    @property
    def err_socket(self) -> Path:
        return self.sockets / "err.sock"


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
        *(MEMORY_CHECKS if config.memory_checks else ()),
        *config.append,
    ]
    return " ".join(params)


def accel_args(config: GuestConfig, boot: BootSpec) -> list[str]:
    """The accelerator's arguments; a TCG guest of several CPUs runs them on one host
    thread (`thread=single`).  With a thread per vCPU (QEMU 7.2), a 2-CPU 6.12 guest
    Oopsed on an int3 left in a call site of a loop running on CPU 1 while CPU 0
    rewrote it (static_call_update of cond_resched, text_poke_bp): cross-modifying
    code that real CPUs serialize.  One thread also leaves the shared machine's
    other core alone."""
    args = list(boot.accel_args)
    if config.cpus > 1 and "tcg" in args:
        args[args.index("tcg")] = "tcg,thread=single"
    return args


def machine_args(config: GuestConfig, boot: BootSpec) -> list[str]:
    return [
        *accel_args(config, boot),
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
    """QMP, for stopping, saving and resuming the guest (harness.guest.qmp)."""
    return ["-qmp", f"unix:{boot.qmp_socket},server=on,wait=off"]


def channel_args(boot: BootSpec) -> list[str]:
    """The command channel (harness.guest.channel): two virtio-serial ports whose host
    ends are unix sockets; the guest's init runs a bash on them."""
    args = ["-device", "virtio-serial-pci,id=klpser"]
    for chardev, path, name in (("klpcmd", boot.cmd_socket, CMD_PORT),
                                ("klperr", boot.err_socket, ERR_PORT)):  # fmt: skip
        args += [
            "-chardev", f"socket,id={chardev},path={path},server=on,wait=off",
            "-device", f"virtserialport,bus=klpser.0,chardev={chardev},name={name}",
        ]  # fmt: skip
    return args


def incoming_args(boot: BootSpec) -> list[str]:
    """Resume a saved guest: QEMU loads its state instead of booting (then waits,
    paused, for `cont`).  It reads the state from a file descriptor it inherits: with
    `exec:cat FILE` a shell and cat started first and every byte crossed a pipe."""
    if boot.incoming is None:
        return []
    return ["-incoming", f"fd:{boot.incoming}"]


def qemu_args(config: GuestConfig, boot: BootSpec) -> list[str]:
    """The full QEMU argument list (argv[0] included)."""
    return [
        QEMU,
        *machine_args(config, boot),
        *boot_args(config, boot),
        *console_args(),
        *network_args(boot),
        *monitor_args(boot),
        *channel_args(boot),
        *config.qemu_opts,  # the user's (`--qemu-opt`): after ours, so they can add devices
        *incoming_args(boot),
    ]


def console_log_path(log_dir: Path | None, name: str, temp_dir: Path) -> Path:
    """A new file for a guest's console in `log_dir`, or in `temp_dir`: without a log
    dir, or if it cannot be written (a full or read-only results directory: the guest
    still runs, and writing the artifacts reports it)."""
    if log_dir is None:
        return temp_dir / "console.log"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1000):  # pid: pytest-xdist workers share the directory
            path = log_dir / f"console-{name}-{stamp}-{os.getpid()}-{n}.log"
            try:
                path.open("x").close()
            except FileExistsError:
                continue
            return path
    except OSError:
        return temp_dir / "console.log"
    raise GuestError(f"no free console log name in {log_dir}")
