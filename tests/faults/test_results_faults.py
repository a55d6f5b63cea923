"""A results directory that fills up or turns read-only while a run writes to it.

The scenario that finished before keeps its artifacts; every later one still runs,
keeps its steps and its verdict's evidence, and ends in one line naming where its
artifacts were not kept; the JUnit file at the end fails in one line; the run exits
1 and leaves nothing behind.  A results directory that is read-only from the start
is refused before anything is built or booted.  Needs root (mount), as CI runs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.common import (
    PROFILE,
    Run,
    assert_nothing_left,
    assert_one_line_reason,
    run_harness,
    scenario_copies,
)

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system needs root"),
]


@pytest.fixture
def mount_point(tmp_path: Path) -> Iterator[Path]:
    """A directory for the test to mount on; unmounted (all layers) afterwards."""
    point = tmp_path / "results"
    point.mkdir()
    yield point
    while subprocess.run(["mountpoint", "-q", str(point)], check=False).returncode == 0:
        subprocess.run(["umount", "-l", str(point)], check=True)


def faulty_run(tmp_path: Path, results: Path, action: str) -> Run:
    """Three scenarios; the fault strikes the results directory during the second."""
    paths = scenario_copies(tmp_path / "scenarios", ["first", "second", "third"])
    fault = {"scenario": "second", "step": 1, "action": action, "arg": str(results)}
    junit = results / "junit.xml"
    return run_harness(results, *paths, faults=[fault], extra=["--junit", str(junit)])


def check(run: Run, reason: str) -> None:
    outcomes = run.outcomes()
    assert outcomes["first"].status == "PASS", run.stderr
    assert len(run.observed("first")) == 3  # written before the fault: kept
    assert (run.artifacts("first") / "console.log").stat().st_size > 0
    for name in ("second", "third"):
        outcome = outcomes[name]
        assert (outcome.status, outcome.steps) == ("ERROR", 3), run.stderr  # ran in full
        assert outcome.reason == f"artifacts not kept in {run.artifacts(name)}: {reason}"
    assert_one_line_reason(run, f"cannot write JUnit XML to {run.results}/junit.xml: {reason}")
    assert run.returncode == 3  # results not kept: the host's failure
    assert_nothing_left(run)


def test_results_directory_fills_up(tmp_path: Path, mount_point: Path, fast_snapshot: None) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
                   check=True)  # fmt: skip
    run = faulty_run(tmp_path, mount_point, "fill")
    check(run, "No space left on device")


def test_results_directory_turns_read_only(
    tmp_path: Path, mount_point: Path, fast_snapshot: None
) -> None:
    run = faulty_run(tmp_path, mount_point, "read-only")
    check(run, "Read-only file system")


def test_read_only_results_directory_is_refused_before_any_work(
    tmp_path: Path, mount_point: Path
) -> None:
    subprocess.run(["mount", "--bind", str(mount_point), str(mount_point)], check=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", str(mount_point)], check=True)
    [path] = scenario_copies(tmp_path / "scenarios", ["first"])
    run = run_harness(mount_point / "deeper", path)
    assert_one_line_reason(run, f"--results {mount_point}/deeper: cannot create files in "
                                f"{mount_point}: Read-only file system")  # fmt: skip
    assert run.returncode == 2
    assert "building" not in run.stderr and run.ports == set()  # nothing built or booted
    assert_nothing_left(run)
    assert PROFILE not in run.stderr
