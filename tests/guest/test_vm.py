"""The real guest: commands on the channel and serial, crashes, and no leftovers.

These start QEMU (TCG on the CI machines) and are never skipped: a missing kernel
profile or QEMU is a failure, since `make test` installs both.  Guests are resumed
from the profile's snapshot (harness.runner.guests), as every scenario's guest is;
booting itself is tested where it matters (the interrupt during a boot, and the
snapshot tests of test_parallel_vm.py, which boot when a snapshot is refused).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.guest.errors import CommandFailed, GuestCrashed, GuestError, GuestTimeout
from harness.guest.vm import Guest
from harness.host import reaper
from harness.kernel.profiles import DEFAULT_PROFILE, load_profile, profile_names
from harness.runner.guests import GuestSource

pytestmark = pytest.mark.vm


def qemu_pids(marker: str) -> list[int]:
    """QEMU processes whose command line mentions `marker` (a guest's temp dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-system-x86_64") and marker.encode() in b" ".join(argv):
            found.append(int(entry.name))
    return found


def wait_gone(marker: str, seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := qemu_pids(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@contextlib.contextmanager
def resumed(profile: str) -> Iterator[Guest]:
    """A guest resumed from the profile's snapshot (made first if there is none)."""
    source = GuestSource(load_profile(profile))
    try:
        guest = source.take({}).guest
        if not guest.restored:  # there was no snapshot: that guest booted and made it
            guest.close()
            guest = source.take({}).guest
        yield guest
    finally:
        source.close()


@pytest.fixture(scope="module", params=profile_names())
def guest(request: pytest.FixtureRequest) -> Iterator[Guest]:
    with resumed(request.param) as ready:
        yield ready


def test_runs_the_profile_kernel_with_livepatch_and_memory_checks(guest: Guest) -> None:
    assert guest.restored and guest.boot_seconds > 0
    assert guest.run("uname -r", check=True).stdout.strip() == guest.config.release
    assert guest.run("test -d /sys/kernel/livepatch").exit_code == 0
    assert guest.accel in ("kvm", "tcg")
    cmdline = guest.run("cat /proc/cmdline", check=True).stdout.split()
    assert {"slub_debug=FZPU", "init_on_free=1"} <= set(cmdline)


def test_exit_code_and_output_on_the_command_channel(guest: Guest) -> None:
    result = guest.run("echo out; echo err >&2; exit 7")
    assert result == (7, "out\n", "err\n")
    assert guest.run("printf 'no newline'").stdout == "no newline"
    with pytest.raises(CommandFailed, match="exited with 1"):
        guest.run("false", check=True)


def test_commands_do_not_leak_state_into_each_other(guest: Guest) -> None:
    before = guest.run("pwd").stdout
    guest.run("cd /tmp; X=1; exit 3")
    assert guest.run('pwd; echo "[$X]"').stdout == before + "[]\n"


def test_exit_code_and_output_over_serial(guest: Guest) -> None:
    result = guest.run_serial("echo out; echo err >&2; exit 7")
    assert result == (7, "out\n", "err\n")
    assert guest.run_serial("uname -r").stdout.strip() == guest.config.release


def test_guest_tools_are_the_real_ones(guest: Guest) -> None:
    script = "readlink -f $(command -v insmod modprobe rmmod depmod sh) | sort -u"
    assert guest.run(script, check=True).stdout.split() == ["/usr/bin/bash", "/usr/bin/kmod"]
    assert "GNU coreutils" in guest.run("stat --version", check=True).stdout
    assert "util-linux" in guest.run("dmesg --version", check=True).stdout
    guest.run("sysctl -n kernel.ftrace_enabled && diff /dev/null /dev/null", check=True)


def test_kernel_interfaces_the_runner_needs(guest: Guest) -> None:
    guest.run("test -f /sys/kernel/debug/dynamic_debug/control", check=True)
    guest.run("test -d /sys/kernel/tracing/events || test -d /sys/kernel/debug/tracing", check=True)
    assert "Linux version" in guest.run("head -n 1 /dev/kmsg", check=True).stdout
    extra = "/lib/modules/$(uname -r)/extra"
    guest.run(f"touch {extra}/probe && rm {extra}/probe && depmod -a", check=True)
    assert "virtio_net" in guest.run("lsmod", check=True).stdout


def test_put_file_copies_bytes_exactly(guest: Guest, tmp_path: Path) -> None:
    data = os.urandom(300_000) + b"\0\n\r\x04"
    local = tmp_path / "blob"
    local.write_bytes(data)
    guest.put_file(local, "/tmp/blob")
    remote = guest.run("sha256sum /tmp/blob", check=True).stdout.split()[0]
    assert remote == hashlib.sha256(data).hexdigest()


def test_ssh_command_reaches_the_guest(guest: Guest) -> None:
    cmd = [*shlex.split(guest.ssh_command()), "uname -r"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == guest.config.release


def test_timeout_kills_the_command_and_the_guest_stays_usable(guest: Guest) -> None:
    with pytest.raises(GuestTimeout):
        guest.run("sleep 300; echo late", timeout=1.0)
    assert guest.run("pgrep -x sleep").exit_code == 1
    assert guest.run("echo ok").stdout == "ok\n"


def test_serial_timeout_interrupts_the_command(guest: Guest) -> None:
    with pytest.raises(GuestTimeout):
        guest.run_serial("sleep 300; echo late", timeout=1.0)
    assert guest.run_serial("echo ok", timeout=10.0).stdout == "ok\n"
    assert guest.run("pgrep -x sleep").exit_code == 1


def test_panic_is_reported_and_qemu_is_gone() -> None:
    with resumed(DEFAULT_PROFILE) as guest:
        assert guest.temp_dir is not None
        temp_dir = str(guest.temp_dir)
        qemu = guest.qemu_pid
        with pytest.raises(GuestCrashed) as crashed:
            guest.run("echo c > /proc/sysrq-trigger")
        assert "Kernel panic - not syncing: sysrq triggered crash" in str(crashed.value)
        assert "sysrq_handle_crash" in crashed.value.excerpt
        with pytest.raises(GuestCrashed):  # a crashed guest stays lost
            guest.run("true")
        with pytest.raises(GuestCrashed):
            guest.check_alive()
    assert not Path(temp_dir).exists()
    assert wait_gone(temp_dir) == []
    assert qemu not in qemu_pids("")


CHILD = """
import sys, time
from harness.kernel.profiles import load_profile
from harness.runner.guests import GuestSource
source = GuestSource(load_profile(sys.argv[1]))
try:
    print(source.take({}).guest.temp_dir, flush=True)
    time.sleep(600)
finally:
    source.close()
"""
# A harness interrupted while QEMU boots (no snapshot involved), without the memory
# checks, which only make the boot slower.
BOOTING_CHILD = """
import sys, time
from harness.guest.vm import Guest, GuestConfig
from harness.kernel.profiles import load_profile
config = GuestConfig.for_profile(load_profile(sys.argv[1]), memory_checks=False)
with Guest(config) as guest:
    time.sleep(600)
"""


def default_sigint() -> None:
    """Children of a shell's background job start with SIGINT ignored, and Python then
    installs no KeyboardInterrupt handler; a user's Ctrl-C reaches a process whose
    SIGINT is at its default, so give the child that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_child() -> tuple[subprocess.Popen[str], str]:
    """A harness process that boots a guest and then waits; returns its temp dir."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, DEFAULT_PROFILE],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=default_sigint,
    )
    assert child.stdout is not None
    temp_dir = child.stdout.readline().strip()
    assert temp_dir, "the child did not boot a guest"
    assert qemu_pids(temp_dir)
    return child, temp_dir


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_harness_leaves_nothing(signum: int) -> None:
    child, temp_dir = start_child()
    child.send_signal(signum)
    child.wait(timeout=30)
    assert wait_gone(temp_dir) == []
    assert not Path(temp_dir).exists()


def test_killed_harness_takes_qemu_with_it() -> None:
    child, temp_dir = start_child()
    child.kill()
    child.wait(timeout=30)
    assert wait_gone(temp_dir) == []  # parent-death signal
    reaper.sweep_stale_dirs()  # what the next guest does first
    assert not Path(temp_dir).exists()


def test_interrupt_during_boot_leaves_nothing() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", BOOTING_CHILD, DEFAULT_PROFILE],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 60
    while not qemu_pids(f"klp-guest-{child.pid}-") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert qemu_pids(f"klp-guest-{child.pid}-"), "QEMU never started"
    child.send_signal(signal.SIGINT)
    child.wait(timeout=30)
    assert wait_gone(f"klp-guest-{child.pid}-") == []
    assert not list(Path("/tmp").glob(f"klp-guest-{child.pid}-*"))


@pytest.mark.parametrize("made", ["temporary directory", "QEMU"])
def test_closed_while_it_starts_leaves_nothing(made: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """close() from another thread (a run being stopped) just after the start made its
    temporary directory, or QEMU, but before it kept it: the start fails at once, and
    neither QEMU nor the directory outlives it (before, QEMU ran on and the start waited
    out its deadline for sockets close() had removed)."""
    from harness.guest import vm

    config = GuestSource(load_profile(DEFAULT_PROFILE)).config()
    guest = Guest(config)
    spawned: list[str] = []
    if made == "QEMU":
        real = vm.Console

        def console_then_close(*args: object, **kwargs: object) -> object:
            console = real(*args, **kwargs)  # type: ignore[arg-type]
            spawned.append(str(console.pid))
            guest.close()
            return console

        monkeypatch.setattr(vm, "Console", console_then_close)
    else:
        real_dir = reaper.make_temp_dir

        def dir_then_close() -> Path:
            path = real_dir()
            spawned.append(str(path))
            guest.close()
            return path

        monkeypatch.setattr(reaper, "make_temp_dir", dir_then_close)
    with pytest.raises(GuestError, match="stopped while it started"):
        guest.__enter__()
    assert spawned
    if made == "QEMU":
        assert int(spawned[0]) not in qemu_pids("")
    else:
        assert not Path(spawned[0]).exists()
