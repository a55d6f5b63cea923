"""`check PATCH` steps without a guest: kpatch's convention as the model predicts it,
its refusals, and what the runner makes of the command's exit status."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.model.check import observed_check
from harness.model.predict import predict
from harness.scenario.loader import load_scenario
from harness.scenario.step_types import Check

PATCHES = """
[[patch]]
name = "lp_a"
check = "grep -q lp_a /proc/cmdline"

[[patch.object]]
name = "vmlinux"
funcs = ["cmdline_proc_show"]

[[patch]]
name = "lp_b"
replace = true

[[patch.object]]
name = "vmlinux"
funcs = ["cmdline_proc_show"]
"""


def _load(tmp_path: Path, steps: list[str], extra: str = PATCHES) -> list[str]:
    path = tmp_path / "s.toml"
    lines = ",\n".join(f'  "{s}"' for s in steps)
    path.write_text(f'description = "Checks."\nsteps = [\n{lines}\n]\n{extra}')
    return [r.ran.get("check lp_a", "") for r in predict(load_scenario(path))]


def test_fails_before_passes_while_fails_after(tmp_path: Path) -> None:
    steps = ["check lp_a", "load lp_a", "check lp_a", "disable lp_a", "check lp_a"]
    assert _load(tmp_path, steps) == ["fails", "", "passes", "", "fails"]


def test_fails_once_a_replace_patch_drops_it(tmp_path: Path) -> None:
    text = PATCHES.replace('funcs = ["cmdline_proc_show"]\n', 'funcs = ["meminfo_proc_show"]\n')
    text = text.replace('funcs = ["meminfo_proc_show"]\n', 'funcs = ["cmdline_proc_show"]\n', 1)
    steps = ["load lp_a", "check lp_a", "load lp_b", "check lp_a"]
    assert _load(tmp_path, steps, text) == ["", "passes", "", "fails"]


def test_refused_when_another_patch_runs_its_function(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"steps\[3\]: check lp_a: lp_b's code runs"):
        _load(tmp_path, ["load lp_a", "check lp_a", "load lp_b", "check lp_a"])


def test_a_patch_without_check(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="lp_b has no `check` command"):
        _load(tmp_path, ["load lp_b", "check lp_b"])


@pytest.mark.parametrize(
    ("status", "text"),
    [(0, "passes"), (1, "fails"), (2, "fails"), (127, "cannot run (exit 127): sh: x: not found")],
)
def test_observed(status: int, text: str) -> None:
    assert observed_check(Check("lp"), status, "sh: x: not found\n") == {"check lp": text}
