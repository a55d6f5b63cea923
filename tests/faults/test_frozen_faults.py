"""A frozen guest: QEMU stopped (SIGSTOP) in the middle of a scenario.

The scenario ends within seconds, not after its step's timeout of minutes, with one
line naming the frozen QEMU and the step it was on, as the host's failure; the guest
is discarded (a stopped QEMU is killed like any other) and the next scenario runs on
a guest of its own; nothing is left behind.
"""

from __future__ import annotations

import re

import pytest

from tests.faults.common import Run, assert_nothing_left, run_harness, scenario_copies

pytestmark = pytest.mark.vm
FROZEN = re.compile(
    r"^the guest is frozen: QEMU \(pid \d+\) is stopped by a signal \(SIGSTOP\?\) for \d+ s, "
    r"during step 2 \(disable test_klp_livepatch\)$"
)


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory, fast_snapshot: None) -> Run:
    tmp = tmp_path_factory.mktemp("frozen")
    paths = scenario_copies(tmp / "scenarios", ["frozen", "after"])
    fault = {"scenario": "frozen", "step": 1, "action": "stop-qemu"}
    return run_harness(tmp / "results", *paths, faults=[fault])


def test_a_frozen_guest_is_named_with_its_step_within_seconds(frozen: Run) -> None:
    outcome = frozen.outcomes()["frozen"]
    assert (outcome.status, outcome.steps) == ("ERROR", 1), frozen.stderr
    assert FROZEN.match(outcome.reason), outcome.reason
    [line] = [ln for ln in frozen.lines if re.match(r"^ERROR +frozen ", ln)]
    seconds = float(re.findall(r" (\d+\.\d)s", line)[0])
    assert seconds < 30, line  # the step's own timeout is minutes
    assert "(host failure)" in line  # not the kernel's


def test_the_next_scenario_runs_and_nothing_is_left(frozen: Run) -> None:
    assert frozen.outcomes()["after"].status == "PASS", frozen.stderr
    assert "Traceback" not in frozen.stderr
    assert_nothing_left(frozen)
