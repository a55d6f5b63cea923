"""kpatch-build's and klp-build's layouts on the kernels their fixtures are built for
(tests/data/kpatch/: debian-6.1, tests/data/klp-build/: debian-7.3): the fixture is
loaded, transitions, passes its LOADED test (kpatch's convention, as `check`), is
replaced by a generated cumulative patch, which is disabled, and everything unloads,
each step equal to the model's prediction (vm); `klp-harness check` of the files with
the LOADED test; the recipe makes fixtures of the same structure, and a damaged one
exits 2 in one line (kbuild)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.kernel.profiles import load_profile
from harness.modules.layout import layout_for
from harness.modules.patch_formats import format_of, read_patch
from tests.modules.test_kpatch_format import set_section_size
from tests.modules.tool_fixtures import TOOLS, build

DEMOS = {
    "kpatch": "livepatch_kpatch_demo",
    "klp-build": "livepatch_klp_build_demo",
}


def loaded_test(tool: str) -> str:
    """The check command of a fixture: its `<name>-LOADED.test` (a shell script that
    passes while the patch is in effect)."""
    return (TOOLS[tool].directory / f"{DEMOS[tool]}-LOADED.test").read_text()


@pytest.mark.vm
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_loaded_checked_replaced_disabled_unloaded(
    tool: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = TOOLS[tool]
    scenario = spec.directory / "replaced_by_cumulative.toml"
    argv = ["run", str(scenario), "--kernel", spec.profile, "--results", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert (
        f"PASS  replaced_by_cumulative [{spec.profile}] 12/12 steps" in captured.out + captured.err
    )


@pytest.mark.vm
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_check_with_the_loaded_test(
    tool: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo (replace) then the no-replace fixture on top; the LOADED test passes
    from the demo's load to its disable."""
    spec = TOOLS[tool]
    files = [str(spec.directory / f"{name}.ko") for name in spec.fixtures]
    check = f"{DEMOS[tool]}={loaded_test(tool)}"
    argv = ["check", "samples:livepatch-shadow-mod", *files, "--check", check]
    assert main([*argv, "--kernel", spec.profile, "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "PASS: 13/13 steps as the model predicts" in out
    assert out.count(f"check {DEMOS[tool]} = passes") == 3


@pytest.mark.kbuild
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_the_recipe_makes_the_checked_in_fixtures(tool: str, tmp_path: Path) -> None:
    spec = TOOLS[tool]
    layout = layout_for(load_profile(spec.profile))
    for name, made in build(spec, tmp_path).items():
        checked_in = spec.directory / f"{name}.ko"
        assert format_of(made) == format_of(checked_in)
        assert read_patch(made, layout) == read_patch(checked_in, layout)


@pytest.mark.kbuild
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_a_damaged_layout_exits_2_in_one_line(
    tool: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = TOOLS[tool]
    path = tmp_path / f"{DEMOS[tool]}.ko"
    shutil.copyfile(spec.directory / path.name, path)
    section = ".kpatch.funcs" if tool == "kpatch" else ".init.klp_objects"
    set_section_size(path, section, 100)
    assert main(["check", str(path), "--kernel", spec.profile]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{section} of 100 bytes is not an array" in err and "\n" not in err
