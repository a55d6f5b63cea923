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


def test_a_directory_is_predicted_per_file_and_kernel_refusals_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`model DIR` goes through every file for every kernel it is meant for; a refusal
    is said with its reason and the others go on: exit 0."""
    from tests.runner.fakes import ONLY_612, PASSING, REFUSED, write_scenarios

    write_scenarios(tmp_path, a_passes=PASSING, b_refused=REFUSED, c_only612=ONLY_612)
    assert main(["model", "--kernel", "debian-6.1", "--kernel", "debian-6.12", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if line.startswith("== ")]
    assert len(heads) == 6
    assert heads[2].endswith(
        "on debian-6.1: refused by the model: step 2: `load lp` would wait for ever: 'lp' stays "
        "in transition, blocked by tgt's work parked in tgt:alpha (orig) (add --nowait to go on "
        "without it)"
    )
    assert heads[4].endswith("on debian-6.1: skipped: not for debian-6.1 (kernels = debian-6.12)")
    assert heads[5].endswith("c_only612.toml) on debian-6.12")  # predicted there
    assert main(["model", "--json", "--kernel", "all", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(d["scenario"], d["profile"], d["status"]) for d in data][:3] == [
        ("a_passes", "debian-6.1", "predicted"),
        ("a_passes", "debian-6.12", "predicted"),
        ("a_passes", "debian-7.3", "predicted"),
    ]
    refused = [d for d in data if d["status"] == "refused"]
    assert len(refused) == 3 and all(d["records"] == [] for d in refused)
    assert data[1]["series"] == "6.12"  # the profile gives the series
    assert data[0]["records"][0]["number"] == 1 and data[0]["records"][0]["index"] == 0


def test_kernel_is_never_taken_for_kernel_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["model", "--kernel-s", "6.12", str(SCENARIOS / "seeds")])  # no abbreviations
    assert info.value.code == 2
    assert "unrecognized arguments: --kernel-s" in capsys.readouterr().err
    assert main(["model", "--kernel", "6.12", str(SCENARIOS / "seeds")]) == 2
    assert "--kernel 6.12: unknown kernel profile" in capsys.readouterr().err
    assert main(["model", "--kernel-series", "6.12", "--kernel", "debian-6.1", "x.toml"]) == 2


def test_symbols_are_checked_against_a_recorded_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in a real function's name is refused as `build` refuses it, when the
    profile's symbols are recorded; without a record, model says it did not check."""
    import gzip

    from harness.commands import model as model_command
    from harness.symbols import record
    from tests.runner.fakes import PROFILES

    getpid = (SCENARIOS / "realfuncs" / "02_getpid_default.toml").read_text()
    typo = tmp_path / "typo.toml"
    typo.write_text(getpid.replace("__do_sys_getpid", "__do_sys_getpdi"))
    monkeypatch.setattr(model_command, "_set_up", lambda name: PROFILES[name])
    recorded = tmp_path / "symbols"
    monkeypatch.setattr(record, "record_dir", lambda _profile: recorded)
    assert main(["model", str(typo)]) == 0
    assert "debian-6.1: symbols not checked: none recorded yet" in capsys.readouterr().err
    recorded.mkdir()
    (recorded / record.KALLSYMS).write_bytes(gzip.compress(b"__do_sys_getpid\ncmdline_proc_show\n"))
    (recorded / record.FTRACE).write_bytes(gzip.compress(b"__do_sys_getpid\ncmdline_proc_show\n"))
    (recorded / record.LOADED).write_text("")
    assert main(["model", str(typo)]) == 2
    err = capsys.readouterr().err
    assert "debian-6.1: vmlinux has no function '__do_sys_getpdi' (close: __do_sys_getpid" in err
    assert main(["model", str(SCENARIOS / "realfuncs" / "02_getpid_default.toml")]) == 0
