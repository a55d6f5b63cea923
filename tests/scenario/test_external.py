"""Scenarios naming module files (`ko = ...`) without a guest or kernel headers: read
without a profile (names only), resolved with the debian-6.1 fixtures of
tests/data/ko/ and its layout, predicted, and their trigger and log handling."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.errors import ScenarioError, UsageError
from harness.model.predict import predict
from harness.modules.elf import read_patch
from harness.modules.external import ModuleFiles, check_file, scenario_objects, scenario_states
from harness.runner.observe import drop_lines_of
from harness.runner.trigger import parse_ran, replacements, trigger_script
from harness.scenario.external import PatchStructure
from harness.scenario.loader import load_scenario, resolve_for
from harness.scenario.step_types import Trigger, Watch
from harness.symbols.data import module_symbols
from tests.modules.test_elf import DATA, LAYOUT_61, PROFILE

SCENARIO = """\
description = "A module file."
steps = [
  "trigger 'cat /proc/cmdline' vmlinux:cmdline_proc_show=1",
  "load livepatch_sample",
  "trigger 'cat /proc/cmdline' vmlinux:cmdline_proc_show=1",
  "disable livepatch_sample",
  "unload livepatch_sample",
]

[[patch]]
ko = "livepatch-sample.ko"
"""


class FixtureResolver(ModuleFiles):
    """What harness.modules.external.ProfileResolver does, with debian-6.1's layout
    given instead of measured (no headers needed)."""

    def module_file(self, ref: str, base: Path, livepatch: bool) -> tuple[str, Path]:
        module = check_file(base / ref, PROFILE, livepatch)
        return module.name, module.path

    def structure(self, path: Path) -> PatchStructure:
        patch = read_patch(path, LAYOUT_61)
        return PatchStructure(scenario_objects(patch), scenario_states(patch), patch.replace)

    def functions(self, path: Path) -> tuple[str, ...]:
        return module_symbols(path).functions


def _write(tmp_path: Path, text: str) -> Path:
    for ko in DATA.glob("*.ko"):
        shutil.copy(ko, tmp_path)
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_read_without_a_profile_then_resolved(tmp_path: Path) -> None:
    path = _write(tmp_path, SCENARIO)
    unresolved = load_scenario(path)
    assert [p.name for p in unresolved.patches] == ["livepatch_sample"]
    assert not unresolved.patches[0].resolved
    with pytest.raises(UsageError, match="not read for a profile"):
        predict(unresolved)
    scenario, files = resolve_for(unresolved, FixtureResolver())
    assert files == {"livepatch_sample": tmp_path / "livepatch-sample.ko"}
    records = predict(scenario)
    assert [r.ran for r in records if r.ran] == [
        {"vmlinux:cmdline_proc_show": "orig*1"},
        {"vmlinux:cmdline_proc_show": "livepatch_sample*1"},
    ]
    # a module file's replacement is observed by a probe on its entry, once loaded
    assert replacements(scenario) == [
        ("livepatch_sample", "vmlinux:cmdline_proc_show", "livepatch_cmdline_proc_show")
    ]
    step = scenario.steps[2]
    assert isinstance(step, Trigger)
    script = trigger_script(step, [Watch("vmlinux", "cmdline_proc_show")], replacements(scenario))
    assert "[ ! -d /sys/module/livepatch_sample ]" in script
    assert "p:klp_new_0 livepatch_sample:livepatch_cmdline_proc_show+0" in script
    out = "B k klp_orig_0 3\nB k klp_new_0 1\nA k klp_orig_0 3\nA k klp_new_0 2\n"
    ran = parse_ran(out, step, [Watch("vmlinux", "cmdline_proc_show")], replacements(scenario))
    assert ran == {"vmlinux:cmdline_proc_show": "livepatch_sample*1"}


def test_callback_lines_only_when_declared(tmp_path: Path) -> None:
    text = """\
description = "Callbacks demo."
steps = ["load livepatch_callbacks_demo", "disable livepatch_callbacks_demo"]

[[patch]]
ko = "livepatch-callbacks-demo.ko"
"""
    path = _write(tmp_path, text)
    quiet, _ = resolve_for(load_scenario(path), FixtureResolver())
    assert not any("_callback:" in line for r in predict(quiet) for line in r.log)
    path.write_text(text + "callback_lines = true\n")
    loud, _ = resolve_for(load_scenario(path), FixtureResolver())
    lines = [line for r in predict(loud) for line in r.log]
    assert "livepatch_callbacks_demo: pre_patch_callback: vmlinux" in lines


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('name = "other"\n', "the module in livepatch-sample.ko is named 'livepatch_sample'"),
        ("replace = true\n", "'replace' comes from the module file"),
        ("[[patch.object]]\nname = 'vmlinux'\n", "'object' comes from the module file"),
    ],
)
def test_bad_tables(tmp_path: Path, extra: str, message: str) -> None:
    path = _write(tmp_path, SCENARIO + extra)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


def test_not_a_livepatch_when_resolved(tmp_path: Path) -> None:
    path = _write(tmp_path, SCENARIO.replace("livepatch-sample.ko", "livepatch-callbacks-mod.ko"))
    text = path.read_text().replace("livepatch_sample", "livepatch_callbacks_mod")
    path.write_text(text)
    with pytest.raises(ScenarioError, match=r"patch\[0\]\.ko: .*not a livepatch module"):
        resolve_for(load_scenario(path), FixtureResolver())


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, ModuleFiles())
    assert "patch[0].ko" in str(info.value) and "\n" not in str(info.value)


def test_without_module_facts_names_follow_kbuild(tmp_path: Path) -> None:
    """The scenario layer reads no module file: without the modules layer's facts a
    `ko` value's module is named by kbuild's rule for its file name."""
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    assert [p.name for p in load_scenario(path).patches] == ["livepatch_sample"]


def test_undeclared_lines_of_a_module_file_are_dropped() -> None:
    lines = [
        "% rmmod livepatch_shadow_fix1",
        "livepatch_shadow_fix1: livepatch_fix1_dummy_leak_dtor: dummy @ PTR1",
        "livepatch: 'livepatch_shadow_fix1': unpatching complete",
    ]
    assert drop_lines_of(lines, ["livepatch_shadow_fix1"]) == [lines[0], lines[2]]


BUSY = """\
description = "A timed blocker."
steps = [
  "load livepatch_callbacks_busymod sleep_secs=6",
  "load livepatch_callbacks_demo --nowait",
  "release livepatch_callbacks_busymod",
  "disable livepatch_callbacks_demo",
]

[[target]]
ko = "livepatch-callbacks-busymod.ko"
blocker = "busymod_work_func"
blocker_param = "sleep_secs"

[[target]]
ko = "livepatch-callbacks-mod.ko"

[[patch]]
ko = "livepatch-callbacks-demo.ko"
"""


def test_timed_blocker_parks_at_load_and_returns_by_itself(tmp_path: Path) -> None:
    path = _write(tmp_path, BUSY)
    scenario, _ = resolve_for(load_scenario(path), FixtureResolver())
    records = predict(scenario)
    assert records[1].pending == "livepatch_callbacks_demo"
    assert records[2].pending is None and records[2].log[-1].endswith("patching complete")
    busymod_lines = [line for r in records for line in r.log if "busymod:" in line]
    assert busymod_lines == []  # the module file's own lines are not predicted
    path.write_text(
        BUSY.replace("release livepatch_callbacks_busymod", "park livepatch_callbacks_busymod")
    )
    with pytest.raises(ScenarioError, match="parks only when it loads"):
        load_scenario(path)


def test_generated_patch_of_a_module_file_function_is_a_real_function_replacement(
    tmp_path: Path,
) -> None:
    """A module file's functions have any signature: a generated patch of one gets the
    default replacement (count, go on in the original), not a target's text line."""
    from harness.modules.render import render_sources

    text = """\
description = "Generated patch of a file's function."
steps = ["load livepatch_callbacks_busymod", "load lp", "disable lp"]

[[target]]
ko = "livepatch-callbacks-busymod.ko"

[[patch]]
name = "lp"

[[patch.object]]
name = "livepatch_callbacks_busymod"
funcs = ["busymod_work_func"]
"""
    sources = render_sources(load_scenario(_write(tmp_path, text)))
    assert list(sources) == ["lp"]  # the file is not generated
    assert "klp_harness_find_resume" in sources["lp"]
    assert "this has been live patched" not in sources["lp"]
