"""The serial console's view of QEMU, with a stand-in QEMU (a small Python process on
the pty): its death is named with its signal or status, crash reports are fatal or
not, and close() never raises, whenever and however QEMU died."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.guest.console import Console, describe_exit
from harness.guest.errors import GuestCrashed

WARN = """\
[    3.854300] ------------[ cut here ]------------
[    3.854502] WARNING: CPU: 0 PID: 110 at crashmod.c:12 crashmod_init+0x20/0x1000 [crashmod]
[    3.854804] Modules linked in: crashmod(OE+)
[    3.860678] ---[ end trace 0000000000000000 ]---
"""
PANIC = """\
[    3.660126] Kernel panic - not syncing: sysrq triggered crash
[    3.660863] Call Trace:
[    3.663300] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---
"""


def fake_qemu(tmp_path: Path, output: str, then: str = "time.sleep(60)") -> Console:
    """A Console whose "QEMU" prints a ready line, then `output`, then runs `then`."""
    script = (
        "import sys, time\n"
        "print('ready', flush=True)\n"
        "time.sleep(0.3)\n"
        f"sys.stdout.write({output!r})\n"
        "sys.stdout.flush()\n"
        f"{then}\n"
    )
    log = tmp_path / "console.log"
    console = Console([sys.executable, "-c", script], log, lambda: None)
    # From the log, not with wait_for: the drain thread may read the line before
    # wait_for takes the console (a loaded machine), and wait_for only sees what
    # comes after it starts.  Python starts slowly on a loaded machine.
    deadline = time.monotonic() + 120
    while "ready" not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the fake QEMU printed no ready line"
        time.sleep(0.01)
    return console


@pytest.fixture
def consoles() -> Iterator[list[Console]]:
    made: list[Console] = []
    yield made
    for console in made:
        console.close()


def lost(console: Console) -> GuestCrashed:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            console.check()
        except GuestCrashed as exc:
            return exc
        time.sleep(0.05)
    raise AssertionError("the console never noticed")


def test_killed_qemu_is_named_with_its_signal(tmp_path: Path, consoles: list[Console]) -> None:
    console = fake_qemu(tmp_path, "")
    consoles.append(console)
    os.kill(console.pid, signal.SIGKILL)
    exc = lost(console)
    assert str(exc) == "QEMU exited (signal 9, SIGKILL)"
    assert exc.fatal and exc.crash is None
    assert not console.is_running()
    console.close()
    console.close()  # idempotent


def test_qemu_exit_status_and_its_last_error_line(tmp_path: Path, consoles: list[Console]) -> None:
    said = "qemu-system-x86_64: -netdev user: Could not set up host forwarding rule\n"
    console = fake_qemu(tmp_path, "", f"sys.stdout.write({said!r}); sys.exit(1)")
    consoles.append(console)
    exc = lost(console)
    assert str(exc) == f"QEMU exited (status 1): {said.strip()}"
    assert "Could not set up host forwarding rule" in exc.excerpt


def test_panic_is_fatal_and_named_before_qemu_exit(tmp_path: Path, consoles: list[Console]) -> None:
    console = fake_qemu(tmp_path, "", f"sys.stdout.write({PANIC!r}); sys.exit(0)")
    consoles.append(console)
    exc = lost(console)
    assert str(exc) == "guest crashed: panic: Kernel panic - not syncing: sysrq triggered crash"
    assert exc.fatal and exc.crash is not None and exc.crash.kind == "panic"


def test_warning_is_a_non_fatal_report(tmp_path: Path, consoles: list[Console]) -> None:
    console = fake_qemu(tmp_path, WARN)
    consoles.append(console)
    exc = lost(console)
    assert str(exc).startswith("kernel report: warning: WARNING: CPU: 0 PID: 110 at crashmod.c")
    assert not exc.fatal
    assert console.is_running()  # the guest answers: its state can still be collected


def test_qemu_killed_after_a_warning_names_both(tmp_path: Path, consoles: list[Console]) -> None:
    console = fake_qemu(tmp_path, WARN)
    consoles.append(console)
    assert not lost(console).fatal  # the report is seen, the guest still runs
    os.kill(console.pid, signal.SIGKILL)
    while console.qemu_exit() is None:
        time.sleep(0.01)
    exc = lost(console)
    assert str(exc).startswith("QEMU exited (signal 9, SIGKILL), after a kernel report: warning:")
    assert exc.fatal


def test_check_lost_waits_for_the_exit_to_show(tmp_path: Path, consoles: list[Console]) -> None:
    """The connection drops a moment before QEMU's exit is visible: check_lost()
    names the exit instead of letting the caller blame the connection."""
    console = fake_qemu(tmp_path, "", "time.sleep(0.5); sys.exit(3)")
    consoles.append(console)
    started = time.monotonic()
    with pytest.raises(GuestCrashed, match=r"^QEMU exited \(status 3\)$"):
        console.check_lost(grace=10)
    assert time.monotonic() - started < 5


def test_check_lost_returns_when_qemu_lives(tmp_path: Path, consoles: list[Console]) -> None:
    console = fake_qemu(tmp_path, "")
    consoles.append(console)
    started = time.monotonic()
    console.check_lost(grace=0.3)
    assert 0.3 <= time.monotonic() - started < 2


@pytest.mark.parametrize("attempt", range(20))
def test_close_never_raises_when_qemu_dies_under_it(
    tmp_path: Path, attempt: int, consoles: list[Console]
) -> None:
    """QEMU killed while the drain thread reads and another thread checks: only one
    path reaps it, so pexpect never finds its child already waited for."""
    console = fake_qemu(tmp_path, "", "while True: print('x' * 100, flush=True)")
    consoles.append(console)
    checker = threading.Thread(target=lambda: lost(console))
    checker.start()
    time.sleep(attempt * 0.005)
    os.kill(console.pid, signal.SIGKILL)
    if attempt % 2:
        time.sleep(0.05)
    console.close()
    checker.join(timeout=60)
    assert not checker.is_alive()
    assert console.qemu_exit() == "QEMU exited (signal 9, SIGKILL)"


def test_full_disk_does_not_blind_the_watcher(tmp_path: Path, consoles: list[Console]) -> None:
    console = fake_qemu(tmp_path, "")
    consoles.append(console)
    console._log.close()  # writes now fail, as on a full results directory
    console.watcher.feed(WARN)
    assert console.watcher.crash is not None


def test_describe_exit() -> None:
    assert describe_exit(os.CLD_EXITED, 0) == "QEMU exited (status 0)"
    assert describe_exit(os.CLD_KILLED, 15) == "QEMU exited (signal 15, SIGTERM)"
    assert describe_exit(os.CLD_DUMPED, 6) == "QEMU exited (signal 6, SIGABRT)"
