"""`klp-harness model` works on every shipped scenario, as text and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.model import predict
from harness.outcome.record import StepRecord
from harness.scenario.loader import load_scenarios, scenario_paths

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def _applies(path: Path, series: str) -> bool:
    """The scenario names no profiles, or one of this series (`debian-7.3` is 7.3)."""
    kernels = load_scenarios([str(path)])[0].kernels
    return not kernels or any(name.endswith(f"-{series}") for name in kernels)


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_every_shipped_scenario_as_json(series: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Those of generated modules: module files (`ko`) are read for a profile, which
    needs its headers (tests/model/test_scenarios.py predicts them as kbuild items)."""
    files = [
        str(p)
        for p in scenario_paths([SCENARIOS])
        if "ko = " not in p.read_text(encoding="utf-8") and _applies(p, series)
    ]
    assert main(["model", "--json", "--kernel-series", series, *files]) == 0
    data = json.loads(capsys.readouterr().out)
    scenarios = load_scenarios(files)
    assert [d["scenario"] for d in data] == [s.name for s in scenarios]
    for entry, scenario in zip(data, scenarios, strict=True):
        assert entry["status"] == "predicted"
        assert [r["number"] for r in entry["records"]] == [r["index"] + 1 for r in entry["records"]]
        records = [
            StepRecord.from_json({k: v for k, v in r.items() if k != "number"})
            for r in entry["records"]
        ]
        assert records == predict(scenario, series)


def test_text_output_shows_steps_logs_and_changes(capsys: pytest.CaptureFixture[str]) -> None:
    path = SCENARIOS / "upstream" / "12_callbacks_busy_target.toml"
    assert main(["model", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\n[1] load test_klp_callbacks_busy block_transition=Y  -> ok\n" in out  # from 1
    assert "[2] load test_klp_callbacks_demo --nowait  -> ok" in out
    assert "    | livepatch: 'test_klp_callbacks_demo': starting patching transition" in out
    assert "    pending: test_klp_callbacks_demo (still blocked)" in out
    assert "    module test_klp_callbacks_demo = 1" in out


def test_unknown_series_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "--kernel-series", "5.4", str(SCENARIOS)]) == 2
    assert "knows no kernel series '5.4'" in capsys.readouterr().err
