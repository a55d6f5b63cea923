"""Reading a livepatch module's structure from its file, on real modules: the
kernel's samples and a selftest module built for debian-6.1 (tests/data/ko/, debug
information stripped), and damaged copies of them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import pytest

from harness.kernel.profiles import KernelProfile
from harness.modules.elf import BadKo, KoFunc, read_patch
from harness.modules.external import check_file, module_name_of, scenario_objects
from harness.modules.layout import KlpLayout
from harness.scenario.types import VMLINUX, Callback

DATA = Path(__file__).parents[1] / "data" / "ko"
# debian-6.1's layout, as its probe module measures it (test_layout_probe checks it)
LAYOUT_61 = KlpLayout(200, 0, 8, 16, 24, 168, 0, 8, 16, 152, 0, 8, 16, 24, 0, 8)
VERMAGIC_61 = "6.1.0-57-amd64 SMP preempt mod_unload modversions"


class FakeProfile:
    name = "debian-6.1"
    vermagic = VERMAGIC_61


PROFILE = cast(KernelProfile, FakeProfile())  # what check_file reads of a profile


def test_sample_patches_cmdline_proc_show() -> None:
    patch = read_patch(DATA / "livepatch-sample.ko", LAYOUT_61)
    assert len(patch.objects) == 1
    obj = patch.objects[0]
    assert obj.name is None
    assert obj.funcs == (KoFunc("cmdline_proc_show", 0, "livepatch_cmdline_proc_show"),)
    assert obj.callbacks == frozenset()
    assert (patch.states, patch.replace) == ((), False)


def test_callbacks_demo_objects_and_callbacks() -> None:
    patch = read_patch(DATA / "livepatch-callbacks-demo.ko", LAYOUT_61)
    assert [o.name for o in patch.objects] == [
        None,
        "livepatch_callbacks_mod",
        "livepatch_callbacks_busymod",
    ]
    assert all(o.callbacks == frozenset(Callback) for o in patch.objects)
    assert [o.funcs for o in patch.objects] == [
        (),
        (),
        (KoFunc("busymod_work_func", 0, "patched_work_func"),),
    ]
    objects = scenario_objects(patch)
    assert objects[0].name == VMLINUX and objects[2].funcs == ("busymod_work_func",)


def test_states_and_replace_of_a_selftest_module() -> None:
    patch = read_patch(DATA / "test_klp_state2.ko", LAYOUT_61)
    assert patch.states == ((1, 2),)
    assert patch.replace is True


def test_reading_is_fast() -> None:
    started = time.monotonic()
    read_patch(DATA / "livepatch-callbacks-demo.ko", LAYOUT_61)
    assert time.monotonic() - started < 1.0


def test_a_target_module_has_no_patch() -> None:
    with pytest.raises(BadKo, match="no static struct klp_patch"):
        read_patch(DATA / "livepatch-callbacks-mod.ko", LAYOUT_61)


def test_checks_pass_on_a_good_patch() -> None:
    module = check_file(DATA / "livepatch-sample.ko", PROFILE, livepatch=True)
    assert module.name == "livepatch_sample"
    assert module_name_of("samples:livepatch-callbacks-demo", DATA) == "livepatch_callbacks_demo"
    assert module_name_of("livepatch-sample.ko", DATA) == "livepatch_sample"


def test_not_a_livepatch() -> None:
    with pytest.raises(BadKo, match="not a livepatch module"):
        check_file(DATA / "livepatch-callbacks-mod.ko", PROFILE, livepatch=True)


def test_vermagic_mismatch_shows_both() -> None:
    class Other(FakeProfile):
        name = "debian-6.12"
        vermagic = "6.12.117+deb12-amd64 SMP preempt mod_unload modversions"

    with pytest.raises(BadKo) as info:
        check_file(DATA / "livepatch-sample.ko", cast(KernelProfile, Other()), livepatch=True)
    assert VERMAGIC_61 in str(info.value) and Other.vermagic in str(info.value)


def test_other_architecture(tmp_path: Path) -> None:
    data = bytearray((DATA / "livepatch-sample.ko").read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # EM_AARCH64
    path = tmp_path / "arm.ko"
    path.write_bytes(bytes(data))
    with pytest.raises(BadKo, match=r"EM_AARCH64.*not x86_64"):
        check_file(path, PROFILE, livepatch=True)


@pytest.mark.parametrize("keep", [64, 3000, 6000])
def test_truncated(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "cut.ko"
    path.write_bytes((DATA / "livepatch-sample.ko").read_bytes()[:keep])
    with pytest.raises(BadKo) as info:
        check_file(path, PROFILE, livepatch=True)
    assert "\n" not in str(info.value)


def test_stripped(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("strip") is None:
        pytest.fail("strip (binutils) is needed to make a stripped module")
    path = tmp_path / "stripped.ko"
    subprocess.run(
        ["strip", "--strip-all", "-o", str(path), str(DATA / "livepatch-sample.ko")], check=True
    )
    with pytest.raises(BadKo, match="no symbol table"):
        check_file(path, PROFILE, livepatch=True)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadKo, match="no such module file"):
        check_file(tmp_path / "nope.ko", PROFILE, livepatch=True)


def test_a_kpatch_build_module_is_named(tmp_path: Path) -> None:
    """kpatch-build's modules assemble their klp_patch at load time from
    .kpatch.funcs: the refusal says which generator made the file."""
    import shutil
    import subprocess

    if shutil.which("objcopy") is None:
        pytest.fail("objcopy (binutils) is needed to make the module")
    blob = tmp_path / "funcs.bin"
    blob.write_bytes(bytes(56))
    path = tmp_path / "kpatch.ko"
    subprocess.run(
        [
            "objcopy",
            "--add-section",
            f".kpatch.funcs={blob}",
            str(DATA / "livepatch-callbacks-mod.ko"),
            str(path),
        ],
        check=True,
    )
    with pytest.raises(BadKo, match="a kpatch-build module"):
        read_patch(path, LAYOUT_61)
