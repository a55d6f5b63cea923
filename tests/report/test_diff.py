"""`klp-harness diff`: two runs paired scenario by scenario, on recorded results."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from harness.cli import main
from harness.report.diff import diff_runs, diff_text
from tests.report.conftest import NEW


def _one_profile(source: Path, profile: str, into: Path) -> Path:
    run = into / profile
    shutil.copytree(source / profile, run / profile)
    return run


def test_the_same_run_has_no_change(results: Callable[[str], Path], tmp_path: Path) -> None:
    run = results(NEW)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    diff = diff_runs(run, copy)
    assert diff.changed == () and diff.only_a == () and diff.only_b == ()
    assert main(["diff", str(run), str(copy)]) == 0


def test_two_kernels_pair_by_name_and_show_behaviour(
    results: Callable[[str], Path], tmp_path: Path
) -> None:
    """A run on one kernel against a run on another: the pairs are made by scenario
    name, and an observation that differs is the kernel behaving differently."""
    run = results(NEW)
    a = _one_profile(run, "debian-6.1", tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a / "debian-6.1", b / "debian-6.12")
    observed = b / "debian-6.12" / "003_disable_middle_of_func_stack" / "observed.json"
    records = json.loads(observed.read_text())
    records[1]["errno"] = 16  # the second kernel refused the second step: -EBUSY
    for record in records:  # and has a sysfs file the first has not (6.14's stack_order)
        patches = {path.split("/")[0] for path in record["sysfs"]}
        record["sysfs"].update({f"{patch}/stack_order": "1" for patch in patches})
    observed.write_text(json.dumps(records))
    diff = diff_runs(a, b)
    assert diff.sysfs_only_b == ("stack_order",)
    [change] = diff.changed
    assert change.kind == "kernel behaves differently"
    assert change.behaviour is not None and change.behaviour.number == 2
    assert change.behaviour.fields == ("errno",)
    assert (change.profile_a, change.profile_b) == ("debian-6.1", "debian-6.12")
    text = diff_text(diff)
    assert "debian-6.1 -> debian-6.12" in text and "differs in errno" in text


def test_newly_failing_and_the_page(results: Callable[[str], Path], tmp_path: Path) -> None:
    run = results(NEW)
    b = tmp_path / "b"
    shutil.copytree(run, b)
    outcome = b / "debian-6.1" / "003_disable_middle_of_func_stack" / "outcome.json"
    verdict = json.loads(outcome.read_text())
    verdict.update(status="difference", first_difference=3)
    outcome.write_text(json.dumps(verdict))
    page = tmp_path / "diff.html"
    assert main(["diff", str(run), str(b), "--html", str(page)]) == 1
    [change] = diff_runs(run, b).changed
    assert (change.scenario, change.kind) == ("003_disable_middle_of_func_stack", "newly failing")
    assert 'data-kind="newly failing"' in page.read_text()


def test_a_missing_run_is_one_line(tmp_path: Path, capsys: object) -> None:
    assert main(["diff", str(tmp_path / "nope"), str(tmp_path)]) == 2
