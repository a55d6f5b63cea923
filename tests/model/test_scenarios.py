"""Every shipped scenario loads and the reference model predicts it, on 6.1, 6.12, 7.3.

No expected output here: this only proves the library is consistent (valid files,
steps the model accepts, one record per step).  Whether a prediction is right is for
the real kernel to say (`klp-harness run`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.kernel.profiles import profile_names
from harness.model import predict
from harness.scenario.loader import load_scenario, scenario_paths
from harness.scenario.step_types import format_step
from harness.scenario.types import Scenario

SCENARIOS = Path(__file__).parents[1] / "scenarios"
FILES = scenario_paths([SCENARIOS])
SERIES = ("6.1", "6.12", "7.3")


def _id(path: Path) -> str:
    return str(path.relative_to(SCENARIOS))


def _series_of(profile: str) -> str:
    """`debian-6.12` -> `6.12`."""
    return profile.rsplit("-", 1)[-1]


def test_library_is_not_empty() -> None:
    assert len(FILES) >= 30
    assert all(_series_of(name) in SERIES for name in profile_names())


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_file_says_what_it_checks(path: Path) -> None:
    """A top comment for the reader of the file, a description for reports."""
    first = path.read_text(encoding="utf-8").lstrip().splitlines()[0]
    assert first.startswith("#"), f"{_id(path)} does not start with a comment"
    assert load_scenario(path).description


def _resolved(scenario: Scenario, series: str) -> Scenario:
    """A scenario with module files, read for the profile of `series` (which needs
    its headers: those cases are `kbuild` items)."""
    if not scenario.external:
        return scenario
    from harness.kernel.profiles import load_profile
    from harness.modules.external import resolve_scenario
    from harness.upstream.samples import sample_locator

    profile = load_profile(f"debian-{series}")
    return resolve_scenario(scenario, profile, sample_locator(profile))[0]


def _cases() -> list[Any]:
    cases = []
    for path in FILES:
        marks = [pytest.mark.kbuild] if "ko = " in path.read_text(encoding="utf-8") else []
        wanted = {_series_of(name) for name in load_scenario(path).kernels}
        cases += [
            pytest.param(path, series, marks=marks, id=f"{_id(path)}-{series}")
            for series in SERIES
            if not wanted or series in wanted  # a scenario limited to some kernels
        ]
    return cases


@pytest.mark.parametrize(("path", "series"), _cases())
def test_model_predicts_every_step(path: Path, series: str) -> None:
    scenario = _resolved(load_scenario(path), series)
    records = predict(scenario, series)
    # every step, or up to a predicted kernel report (a known kernel bug) and no further
    ends = [r.index for r in records if r.report]
    assert ends in ([], [len(records) - 1])
    steps = scenario.steps if not ends else scenario.steps[: ends[0] + 1]
    assert [r.index for r in records] == list(range(len(steps)))
    assert [r.step for r in records] == [format_step(s) for s in steps]
