"""`klp-harness fuzz` without a guest: histories are reproducible from the seed,
refused steps cut a history, every model variant changes predictions (and the model
itself is unchanged), found histories are written as scenario files that load back,
and the model-only search finds and shrinks every variant."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.commands.fuzz import duration
from harness.fuzz.config import SearchConfig
from harness.fuzz.found import write_found
from harness.fuzz.histories import History, Prediction, named_patches, predict_history
from harness.fuzz.judge import ModelJudge, Verdict
from harness.fuzz.palette import PALETTE, PATCH_NAMES, steps_of
from harness.fuzz.search import Stats, search
from harness.model.predict import predict
from harness.model.variants import Variant
from harness.scenario.loader import load_scenario
from harness.scenario.steps import parse_steps
from harness.scenario.writer import scenario_toml


def history(*texts: str) -> History:
    steps = parse_steps(list(texts), PALETTE.targets, PALETTE.patches)
    return History(named_patches(steps), steps)


def first_histories(seed: int, count: int = 40) -> list[tuple[tuple[str, ...], list[str]]]:
    seen: list[tuple[tuple[str, ...], list[str]]] = []

    def keep(prediction: Prediction, verdict: Verdict) -> None:
        seen.append((prediction.history.patches, prediction.history.texts))

    search(
        SearchConfig(seed=seed, seconds=60), ModelJudge(), Stats(), lambda: len(seen) >= count, keep
    )
    return seen[:count]


def test_same_seed_same_histories() -> None:
    first = first_histories(7)
    assert len(first) == 40
    assert first_histories(7) == first
    assert first_histories(8) != first


def test_a_history_is_cut_at_its_first_refused_step() -> None:
    drawn = history(
        "load t_alpha block_transition=Y", "load p_one", "call vmlinux:cmdline_proc_show"
    )
    prediction = predict_history(drawn)
    assert prediction.cut and "would wait for ever" in (prediction.refused or "")
    assert prediction.history.texts == ["load t_alpha block_transition=Y"]
    assert prediction.drawn == 3 and len(prediction.records) == 1


# For each variant: a short history on which it predicts something else than the model.
REFUTING = {
    Variant.REPLACED_UNPATCH_CALLBACKS: ("load p_cmd", "load p_cum"),
    Variant.REPLACED_REENABLE: ("load p_cmd", "load p_cum"),
    Variant.DISABLE_TOP_ONLY: ("load p_one", "load p_cmd", "disable p_one"),
    Variant.NO_NOPS: ("load p_cmd", "load p_cum"),
    Variant.DISABLE_CALLBACKS_REVERSED: ("load t_alpha", "load p_one", "disable p_one"),
    Variant.STATIC_PATCHED_CLEARED: ("load p_cum",),
    Variant.STACK_CHECK_NEW_FUNC: ("load t_beta park=Y", "load p_two --nowait"),
}


@pytest.mark.parametrize("variant", list(Variant), ids=str)
def test_each_variant_changes_a_prediction(variant: Variant) -> None:
    prediction = predict_history(history(*REFUTING[variant]), variant=variant)
    assert not prediction.cut
    assert prediction.records != prediction.reference
    # the model itself is untouched by the switch
    scenario = prediction.history.scenario()
    assert [r.to_json() for r in prediction.reference] == [r.to_json() for r in predict(scenario)]


def test_replaced_patches_can_be_enabled_again_only_in_their_variant() -> None:
    texts = ("load p_cmd", "load p_cum", "enable p_cmd", "call vmlinux:cmdline_proc_show")
    prediction = predict_history(history(*texts), variant=Variant.REPLACED_REENABLE)
    assert prediction.reference[2].errno == 2  # ENOENT: p_cmd was freed
    assert prediction.records[2].errno == 0
    assert prediction.records[3].log[-1] == "p_cmd: this has been live patched"


def test_scenario_toml_round_trips_through_the_loader(tmp_path: Path) -> None:
    every = dataclasses.replace(
        PALETTE,
        path=tmp_path / "all.toml",
        steps=steps_of(PATCH_NAMES),
        kernels=("debian-6.1",),
        links=("https://example.org/thread",),
    )
    (tmp_path / "all.toml").write_text(scenario_toml(every, ["a header"], {0: "a comment"}))
    assert load_scenario(tmp_path / "all.toml") == every


@pytest.mark.parametrize("variant", list(Variant), ids=str)
def test_model_only_search_finds_and_shrinks_each_variant(variant: Variant, tmp_path: Path) -> None:
    config = SearchConfig(seed=1, seconds=30, shrink_seconds=30, variant=variant.value)
    found = search(config, ModelJudge())
    assert found is not None and found.shrunk
    toml, report, length = write_found(tmp_path, found, "model", config)
    assert length <= len(REFUTING[variant]) + 1
    loaded = load_scenario(toml)
    assert len(loaded.steps) == length
    assert "first difference at step" in report.read_text()


def test_command_model_only_writes_the_difference(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["fuzz", "--model-only", "--no-coverage", "--budget", "20s", "--out", str(out)]
    code = cli_main([*argv, "--model-variant", Variant.STATIC_PATCHED_CLEARED.value])
    assert code == 1  # a difference
    (toml,) = out.glob("*.toml")
    assert load_scenario(toml).steps == parse_steps(
        ["load p_cum"], PALETTE.targets, PALETTE.patches
    )
    assert cli_main([*argv[:4], "2s", "--out", str(tmp_path / "none")]) == 0


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0)]
)
def test_budget_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds
