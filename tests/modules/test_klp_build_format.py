"""klp-build's layout read from the file: the fixtures of tests/data/klp-build/ (laid
out as objtool `klp diff` and `klp post-link` lay them out, with an init that builds
the klp_patch as scripts/livepatch/init.c does; README.md there), the first releases'
section names, and copies damaged into what this reader refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from harness.modules import klprela
from harness.modules.elf import BadKo, KoFunc, KoObject
from harness.modules.klp_build_format import VERSIONS
from harness.modules.patch_formats import format_of, read_patch
from harness.scenario.types import Callback
from tests.modules.test_elf import LAYOUT_61
from tests.modules.test_kpatch_format import objcopy, replace_store, set_section_size

DATA = Path(__file__).parents[1] / "data" / "klp-build"
DEMO = DATA / "livepatch_klp_build_demo.ko"
NOREPLACE = DATA / "livepatch_klp_build_noreplace.ko"
LAYOUT = LAYOUT_61  # debian-7.3's klp_patch has mod at 0 and replace at 24 too
OBJECTS = (
    KoObject(
        None,
        (
            KoFunc("cmdline_proc_show", 0, "cmdline_proc_show"),
            KoFunc("version_proc_show", 0, "version_proc_show"),
        ),
        frozenset({Callback.PRE_PATCH, Callback.POST_UNPATCH}),
    ),
    KoObject(
        "livepatch_shadow_mod",
        (KoFunc("dummy_check", 0, "dummy_check"),),
        frozenset({Callback.POST_PATCH}),
    ),
)


def test_the_version_is_named_by_the_sections() -> None:
    assert format_of(DEMO) == VERSIONS[(".init.klp_objects", ".init.klp_funcs")]


def test_objects_and_funcs_in_their_order() -> None:
    patch = read_patch(DEMO, LAYOUT)
    assert patch.objects == OBJECTS
    assert (patch.states, patch.replace) == ((), True)


def test_no_replace() -> None:
    patch = read_patch(NOREPLACE, LAYOUT)
    assert patch.replace is False
    assert patch.objects == (
        KoObject(None, (KoFunc("meminfo_proc_show", 0, "meminfo_proc_show"),), frozenset()),
    )


def test_klp_relocations() -> None:
    sections = klprela.read(DEMO)
    assert [s.objname for s in sections] == ["livepatch_shadow_mod"]
    assert klprela.problems(sections) == []


def test_the_first_releases_section_names(tmp_path: Path) -> None:
    path = objcopy(
        tmp_path,
        DEMO,
        "--rename-section",
        ".init.klp_objects=__klp_objects",
        "--rename-section",
        ".init.klp_funcs=__klp_funcs",
    )
    assert format_of(path) == VERSIONS[("__klp_objects", "__klp_funcs")]
    assert read_patch(path, LAYOUT).objects == OBJECTS


def test_objtool_post_link_not_run_is_refused(tmp_path: Path) -> None:
    """__klp_relocs without a livepatch relocation section: post-link has not run
    (once it has, it leaves __klp_relocs in place, as 7.3's klp-build output shows)."""
    blob = tmp_path / "relocs.bin"
    blob.write_bytes(bytes(24))
    path = objcopy(tmp_path, NOREPLACE, "--add-section", f"__klp_relocs.vmlinux={blob}")
    with pytest.raises(BadKo, match="klp post-link` has not run"):
        read_patch(path, LAYOUT)
    converted = tmp_path / "converted.ko"
    shutil.copyfile(DEMO, converted)  # objcopy would undo its klp relocation section
    rename_section(converted, ".note.GNU-stack", "__klp_relocs.x")
    assert read_patch(converted, LAYOUT).objects == OBJECTS


def rename_section(path: Path, old: str, new: str) -> None:
    """Rename section `old` in place, writing over its name in .shstrtab."""
    with path.open("rb") as stream:
        elf = ELFFile(stream)
        section = elf.get_section_by_name(old)
        assert section is not None and len(new) <= len(old)
        names = elf.get_section(elf["e_shstrndx"])
        at = names["sh_offset"] + section["sh_name"]
    data = bytearray(path.read_bytes())
    data[at : at + len(new) + 1] = new.encode() + b"\0"
    path.write_bytes(bytes(data))


def test_objects_without_their_funcs_section_are_refused(tmp_path: Path) -> None:
    path = objcopy(tmp_path, DEMO, "--rename-section", ".init.klp_funcs=.init.other")
    with pytest.raises(BadKo, match=r"go together; no \.init\.klp_funcs$"):
        read_patch(path, LAYOUT)


def test_a_count_past_the_funcs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.ko"
    shutil.copyfile(DEMO, path)
    set_section_size(path, ".init.klp_funcs", 24)
    with pytest.raises(BadKo, match=r"object 0\'s 2 funcs are not in \.init\.klp_funcs"):
        read_patch(path, LAYOUT)


def test_a_size_of_no_whole_entries_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.ko"
    shutil.copyfile(DEMO, path)
    set_section_size(path, ".init.klp_objects", 100)
    with pytest.raises(BadKo, match="of 100 bytes is not an array of 64-byte entries"):
        read_patch(path, LAYOUT)


def test_an_init_that_sets_replace_elsewhere_is_refused(tmp_path: Path) -> None:
    data = bytearray(DEMO.read_bytes())
    data[replace_store(bytes(data), 1) + 2] = 25
    path = tmp_path / "other-init.ko"
    path.write_bytes(bytes(data))
    with pytest.raises(BadKo, match=r"sets no klp_patch\.replace: not klp-build\'s init\.c"):
        read_patch(path, LAYOUT)


REAL = DATA / "real"


def test_klp_builds_own_output_of_a_vmlinux_diff() -> None:
    """klp-build's output of images/livepatch-tools/diffs/cmdline.patch (7.3.4, made by
    `make livepatch-tools`): the layout the fixtures copy, __klp_relocs.vmlinux left by
    post-link beside the klp relocation it wrote for saved_command_line."""
    path = REAL / "livepatch-cmdline.ko"
    assert format_of(path) == VERSIONS[(".init.klp_objects", ".init.klp_funcs")]
    patch = read_patch(path, LAYOUT)
    assert patch.objects == (
        KoObject(None, (KoFunc("cmdline_proc_show", 0, "cmdline_proc_show"),), frozenset()),
    )
    assert (patch.states, patch.replace) == ((), True)
    [section] = klprela.read(path)
    assert (section.objname, section.target) == ("vmlinux", ".text")
    assert {name for name, _ in section.symbols} == {".klp.sym.vmlinux.saved_command_line,0"}
    assert klprela.problems([section]) == []


def test_klp_builds_own_output_of_a_module_diff() -> None:
    """klp-build's output of images/livepatch-tools/diffs/shadow-dummy-check.patch: one
    object for livepatch_shadow_mod, its dummy_check reaching the module's static
    dummy_list through klp relocations."""
    path = REAL / "livepatch-shadow-dummy-check.ko"
    patch = read_patch(path, LAYOUT)
    assert patch.objects == (
        KoObject("livepatch_shadow_mod", (KoFunc("dummy_check", 0, "dummy_check"),), frozenset()),
    )
    assert patch.replace is True
    [section] = klprela.read(path)
    assert section.objname == "livepatch_shadow_mod"
    assert {name for name, _ in section.symbols} == {".klp.sym.livepatch_shadow_mod.dummy_list,0"}
