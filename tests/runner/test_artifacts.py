"""A scenario's artifact folder reproduces and explains itself without a guest: the
scenario file as read, outcome.json (status, first difference as a step number, step
times, the kernel, the command that runs it again) written last, and the run's HTML
matrix redrawn with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.outcome.compare import first_mismatch
from harness.outcome.scenario import ScenarioOutcome
from harness.runner.manager import write_artifacts
from harness.scenario.loader import load_scenario
from tests.guest.test_image import PROFILE
from tests.model.conftest import ONE_BLOCKED_PATCH, predict_text


def _outcome(tmp_path: Path) -> tuple[ScenarioOutcome, Path]:
    predicted = predict_text(tmp_path, ["load tgt", "load lp"], ONE_BLOCKED_PATCH)
    observed = [record for record in predict_text(tmp_path, ["load tgt"], ONE_BLOCKED_PATCH)]
    second = predict_text(tmp_path, ["load tgt", "load lp"], ONE_BLOCKED_PATCH)[1]
    second.errno = 17  # the kernel said EEXIST
    observed.append(second)
    for number, record in enumerate(observed):
        record.started, record.ended = 100.0 + number, 100.5 + number
        record.guest_started, record.guest_ended = 7.0 + number, 7.4 + number
    outcome = ScenarioOutcome("t", PROFILE.name, predicted, observed, seconds=1.25)
    outcome.mismatch = first_mismatch(predicted, observed)
    return outcome, tmp_path / "t.toml"


def test_outcome_json_and_the_scenario_copy(tmp_path: Path) -> None:
    outcome, scenario_file = _outcome(tmp_path)
    scenario = load_scenario(scenario_file)
    directory = tmp_path / "results" / "run" / PROFILE.name / "t"
    write_artifacts(directory, outcome, None, 0, scenario, PROFILE)
    verdict = json.loads((directory / "outcome.json").read_text())
    assert verdict["status"] == "difference" and verdict["first_difference"] == 2
    assert verdict["kernel"] == {
        "profile": PROFILE.name,
        "release": PROFILE.release,
        "vermagic": PROFILE.vermagic,
    }
    assert verdict["command"].endswith(f"run --kernel {PROFILE.name} {scenario_file.resolve()}")
    assert [s["number"] for s in verdict["steps"]] == [1, 2]
    assert verdict["steps"][1]["guest_start"] == 8.0
    assert (directory / "scenario.toml").read_text() == scenario_file.read_text()
    assert "first difference" in (directory / "report.txt").read_text().lower()
    stacks = json.loads((directory / "predicted.json").read_text())[1]["stacks"]
    assert stacks == {"tgt:f1": ["lp"]}


def test_the_run_report_gains_the_scenario(tmp_path: Path) -> None:
    outcome, scenario_file = _outcome(tmp_path)
    run = tmp_path / "results" / "run"
    write_artifacts(
        run / PROFILE.name / "t", outcome, None, 0, load_scenario(scenario_file), PROFILE
    )
    index = (run / "index.html").read_text()
    assert 'class="cell difference"' in index and "#step-2" in index
    page = (run / PROFILE.name / "t" / "index.html").read_text()
    [second] = re.findall(r'<tbody[^>]*id="step-2"[^>]*>', page)
    assert "first-difference" in second
