"""kpatch-build's layout read from the file: the fixtures of tests/data/kpatch/ (laid
out as create-diff-object and kpatch.lds lay them out, with an init that builds the
klp_patch as kpatch's patch hook does; README.md there), and copies of them damaged
or changed into the variants this reader refuses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from harness.modules import klprela
from harness.modules.elf import BadKo, KoFunc, KoObject
from harness.modules.external import scenario_objects
from harness.modules.kpatch_format import VERSION
from harness.modules.patch_formats import format_of, read_patch
from harness.scenario.types import VMLINUX, Callback
from tests.modules.test_elf import LAYOUT_61

DATA = Path(__file__).parents[1] / "data" / "kpatch"
DEMO = DATA / "livepatch_kpatch_demo.ko"
NOREPLACE = DATA / "livepatch_kpatch_noreplace.ko"


def test_the_format_is_named() -> None:
    assert format_of(DEMO) == VERSION
    assert "kpatch-build" in VERSION and "56-byte" in VERSION


def test_objects_last_met_first_and_funcs_last_first() -> None:
    """.kpatch.funcs lists cmdline_proc_show, dummy_check, version_proc_show: the hook's
    list puts livepatch_shadow_mod first, and vmlinux's functions last first."""
    patch = read_patch(DEMO, LAYOUT_61)
    assert patch.objects == (
        KoObject(
            "livepatch_shadow_mod",
            (KoFunc("dummy_check", 0, "dummy_check"),),
            frozenset({Callback.POST_PATCH}),
        ),
        KoObject(
            None,
            (
                KoFunc("version_proc_show", 0, "version_proc_show"),
                KoFunc("cmdline_proc_show", 0, "cmdline_proc_show"),
            ),
            frozenset({Callback.PRE_PATCH, Callback.POST_UNPATCH}),
        ),
    )
    assert patch.states == ()


def test_replace_is_what_the_hook_was_compiled_with() -> None:
    assert read_patch(DEMO, LAYOUT_61).replace is True
    noreplace = read_patch(NOREPLACE, LAYOUT_61)
    assert noreplace.replace is False
    assert noreplace.objects == (
        KoObject(None, (KoFunc("meminfo_proc_show", 0, "meminfo_proc_show"),), frozenset()),
    )


def test_klp_relocations_mark_the_module_object() -> None:
    sections = klprela.read(DEMO)
    assert [s.objname for s in sections] == ["livepatch_shadow_mod"]
    assert klprela.problems(sections) == []
    objects = scenario_objects(read_patch(DEMO, LAYOUT_61), frozenset({"livepatch_shadow_mod"}))
    assert [(o.name, o.klp_relocs) for o in objects] == [
        ("livepatch_shadow_mod", True),
        (VMLINUX, False),
    ]


def objcopy(tmp_path: Path, source: Path, *args: str) -> Path:
    if shutil.which("objcopy") is None:
        pytest.fail("objcopy (binutils) is needed to make the variant")
    out = tmp_path / source.name
    subprocess.run(["objcopy", *args, str(source), str(out)], check=True)
    return out


def test_a_kpatch_core_module_patch_is_refused(tmp_path: Path) -> None:
    blob = tmp_path / "dynrelas.bin"
    blob.write_bytes(bytes(64))
    path = objcopy(tmp_path, DEMO, "--add-section", f".kpatch.dynrelas={blob}")
    with pytest.raises(BadKo, match=r"kpatch core-module patch .*kpatch\.ko loads it$"):
        read_patch(path, LAYOUT_61)


def test_an_unconverted_intermediate_object_is_refused(tmp_path: Path) -> None:
    blob = tmp_path / "symbols.bin"
    blob.write_bytes(bytes(40))
    path = objcopy(tmp_path, DEMO, "--add-section", f".kpatch.symbols={blob}")
    with pytest.raises(BadKo, match="create-klp-module has not converted it"):
        read_patch(path, LAYOUT_61)


def set_section_size(path: Path, name: str, size: int) -> None:
    """Rewrite the sh_size of section `name` in place."""
    with path.open("rb") as stream:
        elf = ELFFile(stream)
        index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == name)
        at = elf["e_shoff"] + index * elf["e_shentsize"] + 32  # Elf64_Shdr.sh_size
    data = bytearray(path.read_bytes())
    data[at : at + 8] = size.to_bytes(8, "little")
    path.write_bytes(bytes(data))


def test_funcs_of_another_size_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.ko"
    shutil.copyfile(DEMO, path)
    set_section_size(path, ".kpatch.funcs", 100)
    with pytest.raises(BadKo) as info:
        read_patch(path, LAYOUT_61)
    assert str(info.value) == (
        f"{path}: .kpatch.funcs of 100 bytes is not an array of kpatch_patch_func"
    )


def replace_store(data: bytes, value: int) -> int:
    """Where the hook's `movb $value, 0x18(%reg)` is (the one klp_patch.replace store)."""
    found = [
        i
        for i in range(len(data) - 3)
        if data[i] == 0xC6
        and 0x40 <= data[i + 1] <= 0x47
        and data[i + 2 : i + 4] == bytes([24, value])
    ]
    assert len(found) == 1
    return found[0]


def test_an_init_that_sets_no_replace_is_refused(tmp_path: Path) -> None:
    data = bytearray(DEMO.read_bytes())
    data[replace_store(bytes(data), 1) + 2] = 25  # movb $1, 0x19(%rax): another field
    path = tmp_path / "other-init.ko"
    path.write_bytes(bytes(data))
    with pytest.raises(BadKo, match=r"its init sets no klp_patch\.replace: not kpatch-build\'s"):
        read_patch(path, LAYOUT_61)


def test_a_callback_entry_without_its_function_is_refused(tmp_path: Path) -> None:
    path = objcopy(tmp_path, DEMO, "--remove-section", ".rela.kpatch.callbacks.post_patch")
    with pytest.raises(BadKo, match=r"\.kpatch\.callbacks\.post_patch: entry 0 has no callback"):
        read_patch(path, LAYOUT_61)
