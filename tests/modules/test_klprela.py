"""Livepatch relocations of generated patches (harness/modules/klprela.py): the built
module of bugs/02 checked against Documentation/livepatch/module-elf-format.rst with
pyelftools and readelf on each profile (kbuild), and the checks, the source marker and
the log filter without a build; a module file with klp relocations read and modelled."""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.kernel.profiles import load_profile, profile_names
from harness.model.predict import predict
from harness.modules import klprela
from harness.modules.build import build_modules
from harness.modules.external import resolve_scenario
from harness.modules.render import render_sources
from harness.modules.strip import without_debug_info
from harness.runner.observe import filter_log
from harness.scenario.loader import load_scenario
from harness.upstream.samples import sample_locator

RELOAD = (
    Path(__file__).parents[1] / "scenarios" / "bugs" / "02_reload_patched_module_klp_relocs.toml"
)
SECTION = ".klp.rela.klp_rl_target..klp_harness_refs.klp_rl_target"
SYMBOL = ".klp.sym.klp_rl_target.klp_harness_calls,0"


@pytest.mark.kbuild
@pytest.mark.parametrize("profile_name", profile_names())
def test_built_patch_has_one_klp_relocation_section(profile_name: str, tmp_path: Path) -> None:
    scenario = load_scenario(RELOAD)
    ko = build_modules(scenario, load_profile(profile_name)).modules["klp_rl_patch"]
    sections = klprela.read(ko)
    assert sections == [
        klprela.KlpRelaSection(
            name=SECTION,
            objname="klp_rl_target",
            target=".klp_harness_refs.klp_rl_target",
            flags=sections[0].flags,
            symbols=((SYMBOL, klprela.SHN_LIVEPATCH),),
        )
    ]
    wanted = klprela.SHF_ALLOC | klprela.SHF_RELA_LIVEPATCH
    assert sections[0].flags & wanted == wanted
    assert klprela.problems(sections) == []
    # readelf agrees: "AIo" (alloc, info link, OS-specific) and the symbol's OS index
    headers = subprocess.run(["readelf", "-SW", str(ko)], capture_output=True, text=True)
    rela = [line for line in headers.stdout.splitlines() if f"] {SECTION} " in line]
    assert len(rela) == 2 and any(" RELA " in ln and " AIo " in ln for ln in rela), rela
    symbols = subprocess.run(["readelf", "-sW", str(ko)], capture_output=True, text=True)
    assert any("OS [0xff20]" in ln and SYMBOL in ln for ln in symbols.stdout.splitlines())
    # converting again changes nothing; the guest gets the module whole (strip would
    # undo the conversion)
    copy = tmp_path / "p.ko"
    shutil.copyfile(ko, copy)
    assert klprela.convert(copy) == 0 and copy.read_bytes() == ko.read_bytes()
    assert without_debug_info(ko, tmp_path) == ko


def test_only_patches_asking_for_them_are_converted() -> None:
    sources = render_sources(load_scenario(RELOAD))
    assert klprela.in_source(sources["klp_rl_patch"])
    assert not klprela.in_source(sources["klp_rl_target"])


def _section(**kwargs: object) -> klprela.KlpRelaSection:
    fields: dict[str, object] = {
        "name": SECTION,
        "objname": "klp_rl_target",
        "target": ".klp_harness_refs.klp_rl_target",
        "flags": klprela.SHF_ALLOC | klprela.SHF_RELA_LIVEPATCH,
        "symbols": ((SYMBOL, klprela.SHN_LIVEPATCH),),
    }
    fields.update(kwargs)
    return klprela.KlpRelaSection(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        (_section(symbols=((SYMBOL, 0),)), "is not SHN_LIVEPATCH"),
        (_section(symbols=(("klp_harness_calls", klprela.SHN_LIVEPATCH),)), "is not .klp.sym"),
        (
            _section(symbols=((".klp.sym.vmlinux.jiffies,0", klprela.SHN_LIVEPATCH),)),
            "vmlinux symbol",
        ),
        (_section(flags=klprela.SHF_RELA_LIVEPATCH), "not SHF_ALLOC"),
        (_section(name=".klp.rela.x", objname=""), "not named"),
    ],
)
def test_what_the_kernel_would_refuse(section: klprela.KlpRelaSection, problem: str) -> None:
    assert problem in klprela.problems([section])[0]


def test_log_filter_keeps_x86_relocation_errors() -> None:
    line = (
        "module: x86/modules: Skipping invalid relocation target, existing value is "
        "nonzero for type 1, loc ffffffffc0517370, val ffffffffc04f43c8"
    )
    assert filter_log([line, "module: something else"], ["t"]) == [line]


FILE_SCENARIO = """\
description = "bugs/02 with the patch given as its built file."
kernels = ["debian-6.1"]
steps = ["load klp_rl_target", "load klp_rl_patch", "unload klp_rl_target", "load klp_rl_target"]
[[target]]
name = "klp_rl_target"
funcs = ["alpha"]
[[patch]]
ko = "klp_rl_patch.ko"
"""


@pytest.mark.kbuild
def test_a_module_file_with_klp_relocations_is_read_and_modelled(tmp_path: Path) -> None:
    """The reader of module files (harness/modules/elf.py) takes the converted module,
    and the model learns from its sections which objects its relocations write."""
    profile = load_profile("debian-6.1")
    ko = build_modules(load_scenario(RELOAD), profile).modules["klp_rl_patch"]
    shutil.copyfile(ko, tmp_path / "klp_rl_patch.ko")
    (tmp_path / "s.toml").write_text(FILE_SCENARIO)
    scenario, files = resolve_scenario(
        load_scenario(tmp_path / "s.toml"), profile, sample_locator(profile)
    )
    assert set(files) == {"klp_rl_patch"}
    (obj,) = scenario.patches_by_name()["klp_rl_patch"].objects
    assert (obj.name, obj.funcs, obj.klp_relocs) == ("klp_rl_target", ("alpha",), True)
    assert predict(scenario, "6.1")[3].errno == errno.ENOEXEC
