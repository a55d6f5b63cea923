"""The QEMU command line built from a GuestConfig (no QEMU started)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.guest.accel import KVM_ARGS, TCG_ARGS
from harness.guest.config import GuestConfig
from harness.guest.qemu import BootSpec, kernel_cmdline, qemu_args

CONFIG = GuestConfig(kernel=Path("/k/bzImage"), initrd=Path("/k/initrd.cpio.gz"))
BOOT = BootSpec(
    ssh_port=40022,
    sockets=Path("/tmp/klp-guest-1-x"),
    ssh_pubkey="AAAAC3NzaC1lZDI1NTE5AAAAIKEY",
    accel_args=TCG_ARGS,
)


def value(args: list[str], option: str) -> str:
    """The argument following `option` (which must appear exactly once)."""
    assert args.count(option) == 1, option
    return args[args.index(option) + 1]


def test_defaults_one_cpu_half_a_gib_tcg_max() -> None:
    args = qemu_args(CONFIG, BOOT)
    assert args[0] == "qemu-system-x86_64"
    assert value(args, "-smp") == "1"
    assert value(args, "-m") == "512"
    assert value(args, "-accel") == "tcg"
    assert value(args, "-cpu") == "max"
    assert value(args, "-kernel") == "/k/bzImage"
    assert value(args, "-initrd") == "/k/initrd.cpio.gz"


def test_kvm_args_pass_through() -> None:
    args = qemu_args(CONFIG, BootSpec(1, Path("/m"), "K", KVM_ARGS))
    assert value(args, "-accel") == "kvm"
    assert value(args, "-cpu") == "host"


def test_two_cpus_under_tcg_share_one_host_thread() -> None:
    two = dataclasses.replace(CONFIG, cpus=2)
    args = qemu_args(two, BOOT)
    assert (value(args, "-smp"), value(args, "-accel")) == ("2", "tcg,thread=single")
    kvm = qemu_args(two, BootSpec(1, Path("/m"), "K", KVM_ARGS))
    assert (value(kvm, "-smp"), value(kvm, "-accel")) == ("2", "kvm")


def test_panic_ends_qemu() -> None:
    args = qemu_args(CONFIG, BOOT)
    assert "-no-reboot" in args
    assert "panic=-1" in value(args, "-append").split()


def test_network_is_restricted_and_ssh_forwarded_on_loopback_only() -> None:
    netdev = value(qemu_args(CONFIG, BOOT), "-netdev")
    options = netdev.split(",")
    assert "restrict=on" in options
    assert "hostfwd=tcp:127.0.0.1:40022-:22" in options
    assert [o for o in options if o.startswith("hostfwd=")] == ["hostfwd=tcp:127.0.0.1:40022-:22"]


def test_console_on_stdio_without_graphics_or_default_devices() -> None:
    args = qemu_args(CONFIG, BOOT)
    assert value(args, "-serial") == "chardev:console"
    chardevs = [args[i + 1] for i, a in enumerate(args) if a == "-chardev"]
    assert chardevs[0].startswith("stdio,id=console")
    assert "signal=off" in chardevs[0]
    assert value(args, "-display") == "none"
    assert "-nodefaults" in args
    assert "-nographic" not in args  # it would multiplex the monitor onto the console


def test_qmp_socket_in_the_guest_temp_dir() -> None:
    qmp = value(qemu_args(CONFIG, BOOT), "-qmp")
    assert qmp == "unix:/tmp/klp-guest-1-x/qmp.sock,server=on,wait=off"


def test_command_channel_ports_are_unix_sockets_in_the_temp_dir() -> None:
    args = qemu_args(CONFIG, BOOT)
    chardevs = [args[i + 1] for i, a in enumerate(args) if a == "-chardev"]
    assert "socket,id=klpcmd,path=/tmp/klp-guest-1-x/cmd.sock,server=on,wait=off" in chardevs
    assert "socket,id=klperr,path=/tmp/klp-guest-1-x/err.sock,server=on,wait=off" in chardevs
    devices = [args[i + 1] for i, a in enumerate(args) if a == "-device"]
    assert any(d.endswith("name=klp.cmd") for d in devices)
    assert any(d.endswith("name=klp.err") for d in devices)


def test_restore_adds_incoming_and_nothing_else() -> None:
    """A restored guest must get the saved guest's machine: same arguments plus one."""
    restore = BootSpec(40022, Path("/tmp/klp-guest-1-x"), "AAAAC3NzaC1lZDI1NTE5AAAAIKEY",
                       TCG_ARGS, incoming=7)  # fmt: skip
    booted, restored = qemu_args(CONFIG, BOOT), qemu_args(CONFIG, restore)
    assert restored[: len(booted)] == booted
    assert restored[len(booted) :] == ["-incoming", "fd:7"]


def test_kernel_cmdline_carries_key_and_console_settings() -> None:
    params = kernel_cmdline(CONFIG, BOOT).split()
    assert "console=ttyS0,115200" in params
    assert "printk.time=1" in params  # the crash watcher keys on timestamps
    assert "printk.devkmsg=on" in params  # runner lines to /dev/kmsg are not rate-limited
    assert "klp_key=AAAAC3NzaC1lZDI1NTE5AAAAIKEY" in params


def test_config_changes_show_up() -> None:
    config = GuestConfig(
        kernel=Path("/k"), initrd=Path("/i"), memory_mib=2048, cpus=2, append=("nokaslr",)
    )
    args = qemu_args(config, BOOT)
    assert value(args, "-m") == "2048"
    assert value(args, "-smp") == "2"
    assert value(args, "-append").split()[-1] == "nokaslr"


def test_config_is_frozen_and_comparable() -> None:
    assert GuestConfig(Path("/k"), Path("/i")) == GuestConfig(Path("/k"), Path("/i"))
    assert hash(CONFIG) == hash(GuestConfig(kernel=Path("/k/bzImage"), initrd=CONFIG.initrd))


def test_memory_checks_on_by_default_and_off_for_fast_guests() -> None:
    params = kernel_cmdline(CONFIG, BOOT).split()
    assert "slub_debug=FZPU" in params
    assert "init_on_free=1" in params
    assert "page_poison=1" not in params  # fills free memory: ~1 GB snapshots
    fast = dataclasses.replace(CONFIG, memory_checks=False)
    assert not any(
        p.startswith(("slub_debug", "init_on_free")) for p in kernel_cmdline(fast, BOOT).split()
    )


def test_user_qemu_options_come_after_ours() -> None:
    """`--qemu-opt`: the user's arguments follow the harness's (so they may add a device)
    and stay before -incoming, which a resumed guest's command line ends with."""
    config = dataclasses.replace(CONFIG, qemu_opts=("-device", "virtio-rng-pci"))
    args = qemu_args(config, BOOT)
    assert args[-2:] == ["-device", "virtio-rng-pci"]
    assert qemu_args(CONFIG, BOOT) == args[:-2]
