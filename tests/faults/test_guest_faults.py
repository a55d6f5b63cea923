"""Faults inside and around the guest during `klp-harness run --keep-going`.

One run meets them all, one scenario per fault (each a copy of a small upstream
scenario named after its fault, struck at its second step): QEMU killed while the
first guest starts, a panic, an oops, a WARN, QEMU killed mid-step, QEMU killed
while the next scenario's guest is being made, the guest's command shell killed from
inside, a transition that never settles; then a scenario with no fault.  Every fault
must end its scenario with a one-line reason naming it, and the next scenario must
run on a guest of its own; the run exits 1 and leaves nothing behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.faults.common import (
    PROFILE,
    Run,
    assert_nothing_left,
    run_harness,
    scenario_copies,
)

pytestmark = pytest.mark.vm
STUCK = Path(__file__).with_name("stuck.toml")
SESSION_KILL = "read -r _ _ _ _ _ s _ < /proc/$$/stat; pkill -KILL -s $s"
PARK = "echo Y > /sys/module/fault_target/parameters/block_transition"

# scenario -> (status, steps observed, the reason line: a regex)
EXPECTED = {
    "boot_killed": ("ERROR", 0, r"^QEMU exited \(signal 9, SIGKILL\)$"),
    "panic": ("ERROR", 1, r"^guest crashed: panic: Kernel panic - not syncing: sysrq triggered"),
    "oops": ("ERROR", 1, r"^guest crashed: oops: BUG: kernel NULL pointer dereference"),
    "warn": ("ERROR", 1, r"^kernel report: warning: WARNING: .* crashmod_init"),
    "qemu_killed": ("ERROR", 1, r"^QEMU exited \(signal 9, SIGKILL\)$"),
    "next_killed": ("PASS", 3, r""),
    "shell_killed": ("ERROR", 1, r"the guest's command shell was killed by SIGKILL$"),
    "stuck": ("FAIL", 2, r"^steps before it"),
    "after": ("PASS", 3, r""),
}
FAULTS = [
    {"scenario": "panic", "step": 1, "action": "guest", "arg": "echo c > /proc/sysrq-trigger"},
    {"scenario": "oops", "step": 1, "action": "crashmod", "arg": "null"},
    {"scenario": "warn", "step": 1, "action": "crashmod", "arg": "warn"},
    {"scenario": "qemu_killed", "step": 1, "action": "kill-qemu"},
    {"scenario": "next_killed", "step": 1, "action": "kill-next"},
    {"scenario": "shell_killed", "step": 1, "action": "guest", "arg": SESSION_KILL},
    {"scenario": "stuck", "step": 1, "action": "guest", "arg": PARK},
]


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory, fast_snapshot: None) -> Run:
    tmp = tmp_path_factory.mktemp("guest-faults")
    names = list(EXPECTED)
    paths = scenario_copies(tmp / "scenarios", [n for n in names if n != "stuck"])
    paths.insert(names.index("stuck"), scenario_copies(tmp / "scenarios", ["stuck"], STUCK)[0])
    env = {"KLP_FAULT_BOOT": "0.1", "KLP_FAULT_SETTLE": "3"}  # killed long before it is ready
    return run_harness(tmp / "results", *paths, faults=FAULTS, env=env)


@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_each_fault_ends_its_scenario_with_a_one_line_reason(faulty: Run, scenario: str) -> None:
    status, steps, reason = EXPECTED[scenario]
    outcome = faulty.outcomes()[scenario]
    assert (outcome.status, outcome.steps) == (status, steps), faulty.stderr
    if status == "ERROR":
        assert re.search(reason, outcome.reason), outcome.reason
        report = faulty.artifacts(scenario) / "report.txt"
        if steps:  # a scenario that got a guest keeps its artifacts, the reason first
            assert report.read_text().splitlines()[0] == outcome.reason


def test_every_fault_fired_and_the_run_went_on(faulty: Run) -> None:
    fired = [line for line in faulty.lines if line.startswith("klp-fault: ")]
    assert len(fired) == len(FAULTS) + 1, faulty.stderr  # and the boot kill
    assert list(faulty.outcomes()) == list(EXPECTED)
    assert faulty.returncode == 3  # a killed QEMU is the host's failure: it outranks 1
    assert "2/9 scenarios passed" in faulty.stderr


def test_the_scenario_after_each_fault_gets_a_fresh_guest(faulty: Run) -> None:
    names = [n for n in EXPECTED if n != "boot_killed"]  # that one never had a guest
    cmdlines = [(faulty.artifacts(n) / "qemu-cmdline.txt").read_text() for n in names]
    assert len(set(cmdlines)) == len(names)  # a QEMU (port, sockets) of its own each
    for name in names:
        assert len(faulty.observed(name)) == EXPECTED[name][1]
        assert faulty.observed(name)[0]["errno"] == 0  # its first step worked
    after = (faulty.artifacts("after") / "console.log").read_text()
    assert "panic" not in after.lower() and "WARNING" not in after


def test_crash_reports_are_kept_with_the_artifacts(faulty: Run) -> None:
    assert "sysrq triggered crash" in (faulty.artifacts("panic") / "console.log").read_text()
    assert "Oops" in (faulty.artifacts("oops") / "console.log").read_text()
    assert "crashmod_init" in (faulty.artifacts("warn") / "console.log").read_text()
    kernel_log = (faulty.artifacts("panic") / "kernel.log").read_text()
    assert "% modprobe test_klp_livepatch" in kernel_log  # the step before the fault


def test_a_guest_lost_while_being_made_is_named(faulty: Run) -> None:
    [stats] = [line for line in faulty.lines if line.startswith(f"[{PROFILE}]") and "wall" in line]
    assert "; a guest made ahead was lost (QEMU exited (signal 9, SIGKILL)); made again" in stats
    assert " 0 boot(s)" in stats  # the snapshot outlived both QEMUs killed while resuming


def test_a_stuck_transition_is_waited_for_reported_and_discarded(faulty: Run) -> None:
    report = (faulty.artifacts("stuck") / "report.txt").read_text()
    assert "first difference at step 2: load fault_patch" in report
    assert "expected no transition, observed fault_patch" in report
    assert "tasks not yet in the transition's target state:" in report
    assert "busy_func" in report  # the parked task's stack
    assert faulty.outcomes()["after"].status == "PASS"  # on another guest


def test_nothing_is_left_behind(faulty: Run) -> None:
    assert len(faulty.ports) >= len(EXPECTED)
    assert_nothing_left(faulty)


def test_qemu_killed_during_a_real_boot(tmp_path: Path) -> None:
    """Without a snapshot the guest boots; QEMU killed then is reported the same way."""
    [path] = scenario_copies(tmp_path, ["booting"])
    run = run_harness(tmp_path / "results", path, env={"KLP_FAULT_BOOT": "1"},
                      extra=["--no-snapshot"])  # fmt: skip
    outcome = run.outcomes()["booting"]
    assert (outcome.status, outcome.steps) == ("ERROR", 0), run.stderr
    assert outcome.reason == "QEMU exited (signal 9, SIGKILL)"
    assert run.returncode == 3  # a guest that would not boot: the host's failure
    assert_nothing_left(run)
