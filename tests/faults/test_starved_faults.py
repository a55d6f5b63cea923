"""A starved guest and a real lockup, on a quiet and on a loaded host.

Starved: QEMU gets no CPU for 25 s while its guest is busy (SIGSTOPped while the
harness does not wait on the guest, as a host that does not schedule it); the kernel
then reports a soft lockup of the time its clock jumped.  That is the host's doing:
the scenario runs once more on a new guest and passes, and no kernel report or
difference is made of it.  (The report itself, and the decision, are
tests/guest/test_stall.py's, deterministically.)

A real lockup (tests/faults/lockup_spin.toml: a replacement spinning with preemption
off) is still the kernel's report naming the replacement, on a quiet host and while
CPU hogs hold every host CPU at 4x over-subscription.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.faults.common import Run, assert_nothing_left, run_harness, scenario_copies

pytestmark = pytest.mark.vm
LOCKUP = Path(__file__).with_name("lockup_spin.toml")
REAL_LOCKUP = re.compile(
    r"^kernel report: (lockup: watchdog: BUG: soft lockup|rcu-stall: rcu: INFO: rcu_\w+ "
    r"(self-)?detected stall).*klp_harness_new_0_version_proc_show"
)


def test_a_starved_guest_is_never_a_kernel_report(tmp_path: Path, fast_snapshot: None) -> None:
    """Two scenarios starved 25 s each: the kernel reports a soft lockup after most
    such stalls (the clocksource watchdog's message may come first and touch the
    lockup watchdog, so not after every one); each reported one is run again."""
    paths = scenario_copies(tmp_path / "scenarios", ["starved1", "starved2"])
    faults = [{"scenario": p.stem, "step": 1, "action": "starve", "arg": "25"} for p in paths]
    run = run_harness(tmp_path / "results", *paths, faults=faults)
    assert [o.status for o in run.outcomes().values()] == ["PASS", "PASS"], run.stderr
    assert run.returncode == 0
    assert "kernel report" not in run.stderr
    runs = run.stderr.count("step 1/3: load test_klp_livepatch")
    assert 2 <= runs <= 4, run.stderr  # each scenario at most twice
    assert_nothing_left(run)


def real_lockup(tmp_path: Path) -> Run:
    run = run_harness(tmp_path / "results", LOCKUP)
    outcome = run.outcomes()["lockup_spin"]
    assert (outcome.status, outcome.steps) == ("ERROR", 1), run.stderr
    assert REAL_LOCKUP.match(outcome.reason), outcome.reason
    assert "(host failure)" not in run.stderr
    assert run.stderr.count("step 1/2: load klp_spin") == 1  # not run again
    return run


def test_a_real_lockup_is_reported_on_a_quiet_host(tmp_path: Path, fast_snapshot: None) -> None:
    real_lockup(tmp_path)


def test_a_real_lockup_is_reported_on_a_loaded_host(
    tmp_path: Path, fast_snapshot: None, hogs: list[subprocess.Popen[bytes]]
) -> None:
    real_lockup(tmp_path)
