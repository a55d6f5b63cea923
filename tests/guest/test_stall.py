"""A stall report the host caused (QEMU not run) told from the kernel's own
(harness.guest.stall): QEMU's CPU history with a fake clock, the stuck time of the
recorded reports (tests/data), and a console whose "QEMU" prints a real soft lockup
report, with and without a stretch in which it got no CPU."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.guest import stall
from harness.guest.console import Console
from harness.guest.crash import find_reports
from harness.guest.errors import GuestCrashed, HostFailure
from harness.guest.stall import CpuHistory, GuestStarved, host_starved
from tests.guest.test_console import fake_qemu

DATA = Path(__file__).parents[1] / "data"


class Fake:
    """QEMU's CPU time and the clock, as a test sets them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.cpu = 50.0

    def clock(self) -> float:
        return self.now

    def read(self, pid: int) -> float:
        return self.cpu

    def run(self, history: CpuHistory, seconds: float, rate: float) -> None:
        """`seconds` of samples every 0.1 s, QEMU getting `rate` CPU seconds a second."""
        for _ in range(round(seconds * 10)):
            self.now += 0.1
            self.cpu += rate * 0.1
            history.sample()


def test_a_host_that_did_not_run_qemu_is_named() -> None:
    fake = Fake()
    history = CpuHistory(1, fake.read, fake.clock)
    fake.run(history, 20, 1.0)  # a busy guest, scheduled
    fake.run(history, 24, 0.0)  # not scheduled at all (the report measured 24.8 s)
    fake.run(history, 2, 1.0)
    why = host_starved(history, 24)
    assert why == (
        "host stall: QEMU ran 21.9 s of CPU in 46 s and none for 24 s, "
        "of the 24 s the kernel counted as stuck"
    )


@pytest.mark.parametrize("rate", [1.0, 0.7, 0.2])  # quiet host, 4x over-subscribed, worse
def test_a_guest_that_ran_is_not_starved(rate: float) -> None:
    """A real lockup keeps QEMU on a CPU: however little of it the host gives."""
    fake = Fake()
    history = CpuHistory(1, fake.read, fake.clock)
    fake.run(history, 60, rate)
    assert host_starved(history, 24) is None


def test_a_short_pause_is_not_a_stall_of_what_the_kernel_counted() -> None:
    fake = Fake()
    history = CpuHistory(1, fake.read, fake.clock)
    fake.run(history, 20, 1.0)
    fake.run(history, 8, 0.0)  # less than half of 24 s
    fake.run(history, 20, 1.0)
    assert host_starved(history, 24) is None


@pytest.mark.parametrize(
    ("log", "kind", "seconds"),
    [
        ("console-debian-6.1-soft-lockup.log", "lockup", 4.0),
        ("console-debian-6.12-soft-lockup.log", "lockup", None),
        ("console-debian-6.1-stall.log", "rcu-stall", 752 / 250),
        ("console-debian-6.1-warn.log", "warning", None),
    ],
)
def test_the_time_a_report_counted(log: str, kind: str, seconds: float | None) -> None:
    [first, *_] = find_reports((DATA / log).read_text(errors="replace"))
    assert first.kind == kind
    if kind == "lockup" and seconds is None:  # whatever it says, it says some
        assert first.stuck_seconds is not None and first.stuck_seconds > 0
    else:
        assert first.stuck_seconds == seconds


@pytest.fixture
def consoles() -> Iterator[list[Console]]:
    made: list[Console] = []
    yield made
    for console in made:
        console.close()


LOCKUP = (DATA / "console-debian-6.1-soft-lockup.log").read_text(errors="replace")
REPORT = LOCKUP[LOCKUP.index("[   20.705728] watchdog") :]


def raised(console: Console) -> HostFailure | GuestCrashed:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            console.check()
        except (GuestCrashed, HostFailure) as exc:
            return exc
        time.sleep(0.05)
    raise AssertionError("the console never noticed")


def test_a_lockup_reported_while_qemu_ran_is_the_kernel_s(
    tmp_path: Path, consoles: list[Console]
) -> None:
    console = fake_qemu(tmp_path, REPORT)
    consoles.append(console)
    exc = raised(console)
    assert type(exc) is GuestCrashed and not exc.fatal
    assert str(exc).startswith("kernel report: lockup: watchdog: BUG: soft lockup")


def test_a_lockup_reported_after_a_host_stall_is_the_host_s(
    tmp_path: Path, consoles: list[Console], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same report, where QEMU's history shows it went without CPU for longer
    than half the 4 s the report counted (MIN_STALL lowered to fit it)."""
    monkeypatch.setattr(stall, "MIN_STALL", 1.0)
    fake = Fake()
    starved = CpuHistory(1, fake.read, fake.clock)
    fake.run(starved, 10, 1.0)
    fake.run(starved, 6, 0.0)
    fake.run(starved, 1, 1.0)
    console = fake_qemu(tmp_path, "")
    consoles.append(console)
    console.cpu = starved
    console.watcher.feed(REPORT)
    exc = raised(console)
    assert isinstance(exc, GuestStarved) and exc.host_failure and exc.retry
    assert str(exc) == (
        "host stall: QEMU ran 10.9 s of CPU in 17 s and none for 6 s, of the 4 s the kernel "
        "counted as stuck; the kernel's report: watchdog: BUG: soft lockup - CPU#0 stuck for "
        "4s! [insmod:111]"
    )
