"""`klp-harness fuzz` without a guest: histories are reproducible from the seed,
refused steps cut a history, every model variant changes predictions (and the model
itself is unchanged), found histories are written as scenario files that load back
(the whole palette's language included), and the model-only search finds and
shrinks every variant."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.commands.fuzz import duration
from harness.errors import HarnessError
from harness.fuzz import prepare
from harness.fuzz.config import SearchConfig
from harness.fuzz.findings import CORPUS, SCENARIO
from harness.fuzz.found import write_found
from harness.fuzz.histories import History, Prediction, predict_history
from harness.fuzz.judge import ModelJudge, Verdict
from harness.fuzz.palette import ORDER, PALETTE
from harness.fuzz.prepare import sample_files
from harness.fuzz.search import Stats, search
from harness.fuzz.steering import Steering
from harness.fuzz.worlds import parse_many, scenario_of, steps_of, world
from harness.kernel.profiles import DEFAULT_PROFILE, load_profile
from harness.model.predict import predict
from harness.model.variants import Variant
from harness.scenario.loader import load_scenario
from harness.scenario.step_types import Trace, Untrace, format_step
from harness.scenario.types import FuncSpec, PatchModule
from harness.scenario.writer import scenario_toml

EVERYTHING = world(ORDER)


def history(*texts: str) -> History:
    return History.of(parse_many(EVERYTHING, texts))


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


# For each variant: a short history on which it predicts something else than the model
# (on 6.1, where the kernel keeps klp relocations: klp-relocs-kept predicts as 6.1 does).
REFUTING = {
    Variant.REPLACED_UNPATCH_CALLBACKS: ("load p_cmd", "load p_cum"),
    Variant.REPLACED_REENABLE: ("load p_cmd", "load p_cum"),
    Variant.DISABLE_TOP_ONLY: ("load p_one", "load p_cmd", "disable p_one"),
    Variant.NO_NOPS: ("load p_cmd", "load p_cum"),
    Variant.DISABLE_CALLBACKS_REVERSED: ("load t_alpha", "load p_one", "disable p_one"),
    Variant.STATIC_PATCHED_CLEARED: ("load p_cum",),
    Variant.STACK_CHECK_NEW_FUNC: ("load t_beta park=Y", "load p_two --nowait"),
    Variant.FORK_INITIAL_STATE: (
        "load t_alpha block_transition=Y", "load p_spin --nowait", "load t_spin spin=Y"
    ),
    Variant.KPROBE_POST_HANDLER_SHARES: ("load kp_post", "load p_cmd"),
    Variant.BPF_TRAMPOLINE_RELIABLE: (
        "attach nanosleep_exit", "spawn sleeper", "load p_cmd --nowait"
    ),
    Variant.SHADOW_FIELD_NOT_HANDED_OVER: ("load t_alpha", "load p_fld", "load p_fld2"),
    Variant.KLP_RELOCS_KEPT: ("load t_beta", "load p_rel", "unload t_beta", "load t_beta"),
    Variant.KLP_RELOCS_CLEARED: ("load t_beta", "load p_rel", "unload t_beta", "load t_beta"),
}  # fmt: skip
SERIES = {Variant.KLP_RELOCS_KEPT: "6.12"}  # 6.1 keeps them: the variant is 6.1 itself


@pytest.mark.parametrize("variant", list(Variant), ids=str)
def test_each_variant_changes_a_prediction(variant: Variant) -> None:
    series = SERIES.get(variant, "6.1")
    prediction = predict_history(history(*REFUTING[variant]), series, variant=variant)
    assert not prediction.cut
    assert prediction.records != prediction.reference
    # the model itself is untouched by the switch
    scenario = prediction.history.scenario()
    expected = [r.to_json() for r in predict(scenario, series)]
    assert [r.to_json() for r in prediction.reference] == expected


def test_a_variant_of_the_kernels_own_behaviour_changes_nothing_there() -> None:
    """klp-relocs-kept is 6.1's behaviour, klp-relocs-cleared 6.12's: no history can
    refute them there (docs/fuzz.md says where each is refuted)."""
    texts = REFUTING[Variant.KLP_RELOCS_KEPT]
    for variant, series in ((Variant.KLP_RELOCS_KEPT, "6.1"), (Variant.KLP_RELOCS_CLEARED, "6.12")):
        prediction = predict_history(history(*texts), series, variant=variant)
        assert prediction.records == prediction.reference


def test_replaced_patches_can_be_enabled_again_only_in_their_variant() -> None:
    texts = ("load p_cmd", "load p_cum", "enable p_cmd", "call vmlinux:cmdline_proc_show")
    prediction = predict_history(history(*texts), variant=Variant.REPLACED_REENABLE)
    assert prediction.reference[2].errno == 2  # ENOENT: p_cmd was freed
    assert prediction.records[2].errno == 0
    assert prediction.records[3].log[-1] == "p_cmd: this has been live patched"


def _without_body_places(patches: tuple[PatchModule, ...]) -> tuple[PatchModule, ...]:
    """Patches with their bodies' file and line dropped (a written file has its own)."""

    def spec(s: FuncSpec) -> FuncSpec:
        body = s.body and dataclasses.replace(s.body, file="", line=0)
        return dataclasses.replace(s, body=body)

    return tuple(
        dataclasses.replace(
            p,
            objects=tuple(
                dataclasses.replace(o, specs=tuple(map(spec, o.specs))) for o in p.objects
            ),
        )
        for p in patches
    )


def test_scenario_toml_round_trips_through_the_loader(tmp_path: Path) -> None:
    """Every palette module, group, program and step, written and loaded back."""
    steps = tuple(s for s in steps_of(EVERYTHING) if not isinstance(s, Trace | Untrace))
    steps += (Trace("p_cmd", "cmdline_proc_show"), Untrace())
    every = dataclasses.replace(
        scenario_of(EVERYTHING),
        path=tmp_path / "all.toml",
        steps=steps,
        kernels=("debian-6.1",),
        links=("https://example.org/thread",),
    )
    assert every.processes and every.bpf and every.cpus == 2
    (tmp_path / "all.toml").write_text(scenario_toml(every, ["a header"], {0: "a comment"}))
    loaded = load_scenario(tmp_path / "all.toml")
    # a module file's table names the file; what it holds is read again for a profile
    files = [p for p in loaded.patches if p.ko]
    assert [(p.name, p.ko, p.callback_lines, p.resolved) for p in files] == [
        ("livepatch_callbacks_demo", "samples:livepatch-callbacks-demo", True, False)
    ]
    generated = tuple(p for p in loaded.patches if not p.ko)
    assert dataclasses.replace(loaded, patches=_without_body_places(generated)) == (
        dataclasses.replace(
            every, patches=_without_body_places(tuple(p for p in every.patches if not p.ko))
        )
    )
    assert len(PALETTE.patches) == len(loaded.patches)


@pytest.mark.parametrize("variant", list(Variant), ids=str)
def test_model_only_search_finds_and_shrinks_each_variant(variant: Variant, tmp_path: Path) -> None:
    series = SERIES.get(variant, "6.1")
    config = SearchConfig(
        seed=1, seconds=60, shrink_seconds=30, variant=variant.value, series=series
    )
    found = search(config, ModelJudge(series))
    assert found is not None and found.shrunk
    toml, report, length = write_found(tmp_path, found, "model", config)
    assert length <= len(REFUTING[variant]) + 1
    loaded = load_scenario(toml)
    assert len(loaded.steps) == length
    assert "first difference at step" in report.read_text()


def test_command_model_only_keeps_the_difference_in_the_corpus(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["fuzz", "--model-only", "--no-coverage", "--budget", "20s", "--results", str(out)]
    code = cli_main([*argv, "--model-variant", Variant.STATIC_PATCHED_CLEARED.value])
    assert code == 1  # a difference
    (toml,) = (out / CORPUS).glob(f"*/{SCENARIO}")
    (step,) = load_scenario(toml).steps  # a cumulative patch's load: p_cum, or replace=1
    assert step in parse_many(EVERYTHING, ["load p_cum", "load p_cmd replace=1"])
    assert (out / "summary.json").is_file()
    assert cli_main([*argv[:4], "3s", "--results", str(tmp_path / "none")]) == 0


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0)]
)
def test_budget_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


def test_a_history_names_the_patch_that_makes_a_kernel_module_its_own() -> None:
    """`load dummy` alone: the scenario holds p_dummy, whose object dummy is, so the
    runner observes the module and its modprobe line (found by the fuzzer on 7.3)."""
    scenario = history("load dummy").scenario()
    assert [p.name for p in scenario.patches] == ["p_dummy"]
    assert scenario.real_objects() == ["dummy"]


def test_the_kernels_callbacks_demo_is_drawn_as_a_module_file() -> None:
    """The demo has no parameters, and its busy module (an object of it whose work
    logs on a timer) is never loaded; the steering's menus agree."""
    names = world(["livepatch_callbacks_demo"])
    assert names == (
        "livepatch_callbacks_demo", "livepatch_callbacks_mod", "livepatch_callbacks_busymod"
    )  # fmt: skip
    texts = [format_step(step) for step in steps_of(names)]
    assert "load livepatch_callbacks_demo" in texts and "load livepatch_callbacks_mod" in texts
    demo = [t for t in texts if "livepatch_callbacks_demo" in t]
    assert not any("=" in t.replace("retries=", "") or "pre_patch_ret" in t for t in demo)
    assert not any("busymod" in t for t in texts)
    steering = Steering(names, "6.1")
    assert "livepatch_callbacks_busymod" not in steering.base
    menu = [format_step(step) for step in steering.menu("livepatch_callbacks_demo")]
    assert menu == ["load livepatch_callbacks_demo", "load livepatch_callbacks_demo"]


@pytest.mark.kbuild
def test_the_samples_files_are_what_the_palette_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read for the default profile, the samples give the palette's declaration; a
    declaration that differs from its file is refused before any history."""
    profile = load_profile(DEFAULT_PROFILE)
    files = sample_files(profile)
    assert sorted(files) == [
        "livepatch_callbacks_busymod", "livepatch_callbacks_demo", "livepatch_callbacks_mod"
    ]  # fmt: skip
    demo = prepare.PALETTE_PATCHES["livepatch_callbacks_demo"]
    changed = dataclasses.replace(demo, objects=demo.objects[:2])
    monkeypatch.setitem(prepare.PALETTE_PATCHES, demo.name, changed)
    with pytest.raises(
        HarnessError, match="the palette's livepatch_callbacks_demo is not its file's"
    ):
        sample_files(profile)
