"""An exported selftest: functions.sh's helpers where their semantics are the step's,
the model's transcript in the words of the profile's functions.sh, bash that parses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.export.directory import Target, export_kselftests
from harness.export.expect import Expect
from harness.export.kselftest import script_name
from harness.export.names import Namer, renamed
from harness.export.plan import plan
from harness.export.transcript import Style, transcript, upstream_keeps
from tests.export.conftest import shipped


def _steps(name: str, series: str, expect: Expect = Expect.AS_IS):  # type: ignore[no-untyped-def]
    scenario = shipped(name)
    exported = renamed(scenario, Namer().names(scenario, "1"))
    return exported, plan(exported, series, expect)


def test_style_follows_functions_sh() -> None:
    assert not Style.for_series("6.1").insmod
    assert Style.for_series("6.8").insmod and Style.for_series("7.3").insmod


def test_6_1_transcript_is_the_models_log() -> None:
    _scenario, steps = _steps("coexist/03", "6.1")
    expected = [line for s in steps for line in s.record.log if upstream_keeps(line)]
    assert transcript(steps, Style.for_series("6.1")) == expected
    assert (
        "modprobe: ERROR: could not insert 'test_klp_kp_post': Device or resource busy" in expected
    )


def test_insmod_words_and_a_loaded_module_left_alone() -> None:
    """6.12+ insmod test_modules/M.ko; insmod's EBUSY is strerror's; on 7.3 (as-is) the
    second load of the unarmed kp_post finds it loaded: no marker."""
    _scenario, steps = _steps("coexist/03", "6.12")
    lines = transcript(steps, Style.for_series("6.12"))
    assert lines[0] == "% insmod test_modules/test_klp_lp.ko"
    assert (
        "insmod: ERROR: could not insert module test_modules/test_klp_kp_post.ko: "
        "Device or resource busy"
    ) in lines
    _scenario, steps = _steps("coexist/03", "7.3")
    assert steps[5].loaded_before
    lines = transcript(steps, Style.for_series("7.3"))
    assert lines.count("% insmod test_modules/test_klp_kp_post.ko") == 1


def test_insmod_has_its_own_einval() -> None:
    style = Style(insmod=True)
    assert style.load_error("test_klp_x", 22).endswith(": Invalid parameters")


def _export(tmp_path: Path, names: list[str], profile: str, expect: Expect) -> Path:
    scenarios = [shipped(n) for n in names]
    series = profile.removeprefix("debian-")
    result = export_kselftests(scenarios, tmp_path, Target(profile, series, series), expect)
    assert not result.refused
    return tmp_path


def test_the_script_uses_upstreams_helpers(tmp_path: Path) -> None:
    out = _export(tmp_path, ["coexist/03"], "debian-6.1", Expect.AS_IS)
    text = (out / script_name(shipped("coexist/03"))).read_text()
    assert ". $(dirname $0)/functions.sh" in text and "setup_config" in text
    assert "load_lp $MOD_LP\n" in text
    assert "load_failing_mod $MOD_KP_POST\n" in text
    assert "disable_lp $MOD_LP\n" in text and "unload_lp $MOD_LP\n" in text
    assert 'check_runs /proc/cmdline "$MOD_LP: this has been live patched"' in text
    assert "check_result \"% modprobe $MOD_LP\nlivepatch: enabling patch '$MOD_LP'" in text


def test_fixed_7_3_expects_the_ebusy(tmp_path: Path) -> None:
    out = _export(tmp_path, ["coexist/03"], "debian-7.3", Expect.FIXED)
    text = (out / script_name(shipped("coexist/03"))).read_text()
    assert "load_failing_mod $MOD_KP_POST\n" in text
    assert "register_kprobe() returns 0" in text  # the header names the bug


def test_blocked_transitions_use_the_nowait_forms(tmp_path: Path) -> None:
    out = _export(tmp_path, ["conformance/12"], "debian-6.12", Expect.AS_IS)
    text = (out / script_name(shipped("conformance/12"))).read_text()
    assert "load_lp_nowait $MOD_C12_P1\n" in text
    assert "write_sysfs Y /sys/module/$MOD_C12_TARGET/parameters/block_transition" in text
    assert "write_failing_sysfs 0 /sys/kernel/livepatch/$MOD_C12_P0/enabled" in text
    assert "unload_failing_mod $MOD_C12_S" in text
    assert "livepatches_are $MOD_C12_P0:0 $MOD_C12_P1:1" in text


@pytest.mark.parametrize("profile", ["debian-6.1", "debian-6.12", "debian-7.3"])
def test_scripts_are_bash(tmp_path: Path, profile: str) -> None:
    names = ["coexist/03", "coexist/09", "bugs/01", "conformance/01", "conformance/17"]
    out = _export(tmp_path, names, profile, Expect.FIXED)
    for script in out.glob("test-*.sh"):
        assert script.stat().st_mode & 0o111
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_directory_layout(tmp_path: Path) -> None:
    out = _export(tmp_path, ["coexist/03", "coexist/09"], "debian-7.3", Expect.AS_IS)
    modules = sorted(p.name for p in (out / "test_modules").iterdir())
    assert modules == [
        "Makefile",
        "test_klp_kp_plain.c",
        "test_klp_kp_post.c",
        "test_klp_kretp.c",
        "test_klp_lp.c",
    ]
    lines = (out / "Makefile.lines").read_text()
    assert "\ttest-coexist-09-kretprobe-docs.sh \\\n" in lines and "\ttest_klp_lp.o \\\n" in lines
    assert "obj-m += test_klp_kretp.o" in (out / "test_modules" / "Makefile").read_text()


def test_refused_scenarios_are_listed_and_the_others_written(tmp_path: Path) -> None:
    scenarios = [shipped("bugs/05"), shipped("bugs/01")]
    result = export_kselftests(
        scenarios, tmp_path, Target("debian-6.1", "6.1", "6.1"), Expect.AS_IS
    )
    assert [r.scenario.name for r in result.refused] == [scenarios[0].name]
    assert [e.script for e in result.exported] == ["test-bugs-01-replace-sympos-0-vs-1.sh"]
