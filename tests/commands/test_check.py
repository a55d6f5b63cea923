"""`klp-harness check FILE.ko...`: the life cycle it plans for the kernel's samples
(kbuild: read for debian-6.1), its one-line refusals before any guest, and the whole
command on a guest of every profile (vm)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.kernel.profiles import load_profile, profile_names
from harness.modules.external import ProfileResolver
from harness.modules.lifecycle import life_cycle
from harness.scenario.step_types import format_step
from harness.upstream.samples import sample_locator

DATA = Path(__file__).parents[1] / "data" / "ko"
SAMPLES = [
    "samples:livepatch-sample",
    "samples:livepatch-callbacks-mod",
    "samples:livepatch-callbacks-busymod",
    "samples:livepatch-callbacks-demo",
    "samples:livepatch-shadow-mod",
    "samples:livepatch-shadow-fix1",
    "samples:livepatch-shadow-fix2",
]


def _resolver(name: str) -> ProfileResolver:
    profile = load_profile(name)
    return ProfileResolver(profile, sample_locator(profile))


CHECK = "livepatch_sample=grep -qx 'this has been live patched' /proc/cmdline"


@pytest.mark.kbuild
def test_life_cycle_of_the_samples() -> None:
    checks = {"livepatch_sample": CHECK.partition("=")[2]}
    files = SAMPLES
    scenario = life_cycle(files, checks, _resolver("debian-6.1"))
    steps = [format_step(s) for s in scenario.steps]
    loads = [s for s in steps if s.startswith("load ")]
    assert loads == [f"load {f.removeprefix('samples:').replace('-', '_')}" for f in files]
    assert [s for s in steps if s.startswith("disable ")] == [
        "disable livepatch_shadow_fix2",
        "disable livepatch_shadow_fix1",
        "disable livepatch_callbacks_demo",
        "disable livepatch_sample",
    ]
    assert steps[:3] == [
        "check livepatch_sample",
        "load livepatch_sample",
        "check livepatch_sample",
    ]
    assert steps[-1] == "unload livepatch_sample"


@pytest.mark.kbuild
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["/nonexistent.ko"], "no such module file"),
        (["--kernel", "debian-6.12", str(DATA / "livepatch-sample.ko")], "is not debian-6.12's"),
        (["samples:livepatch-callbacks-demo"], "samples:livepatch-callbacks-mod)"),
        ([str(DATA / "livepatch-sample.ko"), "--check", "foo=true"], "no livepatch module"),
    ],
)
def test_refused_before_any_guest(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.kbuild
def test_truncated_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cut.ko"
    path.write_bytes((DATA / "livepatch-sample.ko").read_bytes()[:3000])
    assert main(["check", str(path)]) == 2
    assert "truncated" in capsys.readouterr().err


@pytest.mark.vm
@pytest.mark.parametrize("profile_name", profile_names())
def test_samples_pass(
    profile_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["check", *SAMPLES, "--check", CHECK, "--kernel", profile_name]
    assert main([*argv, "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"[{profile_name}] PASS" in out and "check livepatch_sample = passes" in out


def test_a_patched_module_not_given_names_the_file_and_the_sample(tmp_path: Path) -> None:
    """The callbacks demo patches the callbacks sample modules: without them the
    refusal names the demo's file (not the life cycle's made-up scenario path) and
    the sample that would do."""
    import dataclasses

    from harness.commands.check import _check_objects
    from harness.errors import UsageError
    from harness.scenario.loader import load_scenario
    from tests.runner.fakes import fake_profile

    path = tmp_path / "demo.toml"
    path.write_text(
        'description = "d"\nsteps = ["load demo"]\n[[patch]]\nname = "demo"\n'
        '[[patch.object]]\nname = "livepatch_callbacks_mod"\nfuncs = ["callbacks_mod_work"]\n'
    )
    scenario = load_scenario(path)
    patch = dataclasses.replace(scenario.patches[0], ko="livepatch-callbacks-demo.ko")
    profile = dataclasses.replace(fake_profile("debian-6.1"), modules_dir=tmp_path)
    with pytest.raises(UsageError) as info:
        _check_objects(dataclasses.replace(scenario, patches=(patch,)), profile)
    assert str(info.value) == (
        "livepatch-callbacks-demo.ko: patches 'livepatch_callbacks_mod', which is neither "
        "vmlinux, one of the files given nor a module of debian-6.1: give its module file too "
        "(the kernel's sample of that name: samples:livepatch-callbacks-mod)"
    )


def test_an_unknown_sample_is_bad_input() -> None:
    from harness.errors import UsageError
    from harness.upstream.samples import Samples

    with pytest.raises(UsageError, match=r"^no sample module nosuch \(samples: livepatch-s"):
        Samples("debian-6.1", {"livepatch-sample": Path("x.ko")}).ko("nosuch")
