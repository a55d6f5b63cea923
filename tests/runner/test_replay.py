"""A scenario's artifact folder as input (`repro FOLDER`, `run FOLDER`): read against
what the manager writes (outcome.json, scenario.toml), refused in one line when it is
not one, run again as it ran (its kernel, its options)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.errors import UsageError
from harness.outcome.scenario import ScenarioOutcome
from harness.runner.manager import OUTCOME, SCENARIO_COPY, outcome_json
from harness.runner.options import GuestOptions
from harness.runner.replay import artifact_folders, load_folder, read_folder
from harness.scenario.loader import load_scenario
from tests.runner.fakes import PASSING, PROFILES, no_guests, write_scenarios

OPTIONS = ["--append", "quiet", "--memory", "640", "--model-variant", "no-nops"]


def folder_of(tmp_path: Path, name: str = "first", profile: str = "debian-6.12") -> Path:
    """What a run leaves for scenario `name` on `profile`, run with OPTIONS."""
    [path] = write_scenarios(tmp_path / "scenarios", **{name: PASSING})
    scenario = load_scenario(path)
    outcome = ScenarioOutcome(name, profile, [], run_options=list(OPTIONS))
    directory = tmp_path / "results" / "20260101-000000" / profile / name
    directory.mkdir(parents=True)
    (directory / SCENARIO_COPY).write_text(scenario.text)
    data = outcome_json(outcome, scenario, PROFILES[profile])
    (directory / OUTCOME).write_text(json.dumps(data))
    return directory


def test_a_folder_is_read_under_its_scenario_s_name(tmp_path: Path) -> None:
    directory = folder_of(tmp_path)
    folder = read_folder(directory)
    assert (folder.scenario, folder.profile, folder.release) == ("first", "debian-6.12",
                                                                 "6.12.0-1-amd64")  # fmt: skip
    assert folder.command[:4] == ("klp-harness", "run", "--kernel", "debian-6.12")
    assert load_folder(folder).name == "first"
    assert artifact_folders(tmp_path / "results") == [directory]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / OUTCOME).unlink(), "not a scenario's artifact folder (no outcome.json)"),
        (lambda d: (d / SCENARIO_COPY).unlink(), "(no scenario.toml)"),
        (lambda d: (d / OUTCOME).write_text("{"), "outcome.json: cannot be read"),
        (lambda d: (d / OUTCOME).write_text('{"scenario": "x"}'),
         "lacks profile, status, command, kernel"),
    ],
)  # fmt: skip
def test_not_a_folder_is_one_line(tmp_path: Path, damage: object, message: str) -> None:
    directory = folder_of(tmp_path)
    damage(directory)  # type: ignore[operator]
    with pytest.raises(UsageError) as info:
        read_folder(directory)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_repro_of_a_folder_without_its_record_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = folder_of(tmp_path)
    (directory / SCENARIO_COPY).unlink()
    assert cli_main(["repro", str(directory)]) == 2
    err = capsys.readouterr().err
    assert err == f"klp-harness: error: {directory}: not a scenario's artifact folder " \
                  "(no scenario.toml)\n"  # fmt: skip


def test_run_of_a_folder_runs_it_as_it_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = no_guests(monkeypatch)
    directory = folder_of(tmp_path)
    results = tmp_path / "again"
    assert cli_main(["run", "--results", str(results), str(directory)]) == 0
    assert "PASS  first [debian-6.12]" in capsys.readouterr().err  # its name, its kernel
    assert plan.options == [GuestOptions(("quiet",), 640)]
    assert plan.run_options == [OPTIONS]
    assert cli_main(["run", "--kernel", "debian-6.1", "--memory", "800",
                     "--results", str(results), str(directory)]) == 0  # fmt: skip
    assert "PASS  first [debian-6.1]" in capsys.readouterr().err  # what is given wins
    assert plan.options[-1] == GuestOptions(("quiet",), 800)
