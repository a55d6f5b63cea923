"""Build cache hit/miss logic and .ko checks, with a fake make (no compiler, no kernel)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from harness.errors import HarnessError, UsageError
from harness.kernel.profiles import KernelProfile
from harness.modules.build import build_modules, module_key, read_modinfo
from harness.scenario.types import VMLINUX, PatchModule, PatchObject, TargetModule

TARGET = TargetModule("klp_target", ("alpha", "beta"))
PATCH = PatchModule("klp_patch", (PatchObject("klp_target", ("alpha",)),))
COMPILER = "gcc (Fake) 12.2.0"


def fake_ko(modinfo: dict[str, str]) -> bytes:
    """A minimal ELF64 LE file whose only real section is .modinfo."""
    info = b"".join(f"{k}={v}".encode() + b"\0" for k, v in modinfo.items())
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    info_off = 64
    str_off = info_off + len(info)
    shoff = str_off + len(shstrtab)
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x28, shoff)
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 2)

    def section(name: int, offset: int, size: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, 1, 0, 0, offset, size, 0, 0, 1, 0)

    return (
        bytes(header)
        + info
        + shstrtab
        + bytes(64)
        + section(1, info_off, len(info))
        + section(10, str_off, len(shstrtab))
    )


class FakeMake:
    """Stands in for `make -C build_dir M=dir modules`: writes a .ko per obj-m line of
    the Kbuild it is given, with the modinfo a real build would produce."""

    def __init__(self, profile: KernelProfile) -> None:
        self.profile = profile
        self.calls: list[list[str]] = []  # modules built per call
        self.fail_with: str | None = None
        self.vermagic: str | None = None
        self.livepatch = True

    def __call__(self, argv: Sequence[str], cwd: Path) -> tuple[int, str]:
        assert argv[:3] == ["make", "-C", str(self.profile.build_dir)]
        assert argv[-1] == "modules" and f"M={cwd}" in argv
        names = re.findall(r"^obj-m \+= (\w+)\.o$", (cwd / "Kbuild").read_text(), re.M)
        self.calls.append(names)
        if self.fail_with:
            return 2, f"  CC [M]  {cwd}/x.o\n{self.fail_with}\nmake: *** Error 2\n"
        for name in names:
            source = (cwd / f"{name}.c").read_text()
            info = {"vermagic": (self.vermagic or self.profile.vermagic) + " ", "name": name}
            if self.livepatch and 'MODULE_INFO(livepatch, "Y")' in source:
                info["livepatch"] = "Y"
            (cwd / f"{name}.ko").write_bytes(fake_ko(info))
        return 0, "".join(f"  LD [M]  {cwd}/{n}.ko\n" for n in names)


@pytest.fixture
def profile(tmp_path: Path) -> KernelProfile:
    build_dir = tmp_path / "kernel"
    build_dir.mkdir()
    (build_dir / "Makefile").write_text("# fake\n")
    return KernelProfile(
        name="debian-6.1",
        release="6.1.0-56-amd64",
        version="6.1.192",
        vermagic="6.1.0-56-amd64 SMP preempt mod_unload modversions",
        bzimage=tmp_path / "bzImage",
        build_dir=build_dir,
        modules_dir=tmp_path / "modules",
        config=tmp_path / "missing-config",
        livepatch=True,
    )


@pytest.fixture
def make(profile: KernelProfile) -> FakeMake:
    return FakeMake(profile)


def build(
    modules: Sequence[TargetModule | PatchModule],
    profile: KernelProfile,
    make: FakeMake,
    cache: Path,
    compiler: str = COMPILER,
) -> tuple[dict[str, Path], list[str], list[str]]:
    result = build_modules(modules, profile, cache_dir=cache, make=make, compiler=compiler)
    return result.modules, result.built, result.cached


def test_cold_build_is_one_make_call(
    profile: KernelProfile, make: FakeMake, tmp_path: Path
) -> None:
    kos, built, cached = build([TARGET, PATCH], profile, make, tmp_path / "cache")
    assert make.calls == [["klp_patch", "klp_target"]]
    assert built == ["klp_patch", "klp_target"] and cached == []
    assert read_modinfo(kos["klp_patch"])["livepatch"] == ["Y"]
    assert kos["klp_target"].parent.parent == tmp_path / "cache"
    assert (kos["klp_target"].parent / "klp_target.c").is_file()
    assert (kos["klp_target"].parent / "build.log").is_file()
    assert not list((tmp_path / "cache" / "tmp").iterdir())  # work dirs cleaned up


def test_second_build_is_all_cached(profile: KernelProfile, make: FakeMake, tmp_path: Path) -> None:
    first, _, _ = build([TARGET, PATCH], profile, make, tmp_path)
    again, built, cached = build([TARGET, PATCH], profile, make, tmp_path)
    assert len(make.calls) == 1
    assert built == [] and cached == ["klp_patch", "klp_target"]
    assert again == first


def test_only_changed_module_is_rebuilt(
    profile: KernelProfile, make: FakeMake, tmp_path: Path
) -> None:
    build([TARGET, PATCH], profile, make, tmp_path)
    changed = replace(TARGET, funcs=("alpha", "beta", "gamma"))
    _, built, cached = build([changed, PATCH], profile, make, tmp_path)
    assert make.calls[-1] == ["klp_target"]
    assert built == ["klp_target"] and cached == ["klp_patch"]


def test_module_shared_between_sets_is_built_once(
    profile: KernelProfile, make: FakeMake, tmp_path: Path
) -> None:
    build([TARGET], profile, make, tmp_path)
    other = PatchModule("klp_other", (PatchObject(VMLINUX, ("cmdline_proc_show",)),))
    _, built, cached = build([TARGET, other], profile, make, tmp_path)
    assert make.calls == [["klp_target"], ["klp_other"]]
    assert built == ["klp_other"] and cached == ["klp_target"]


@pytest.mark.parametrize(
    "change",
    [
        {"release": "6.1.0-57-amd64", "vermagic": "6.1.0-57-amd64 SMP preempt mod_unload"},
        {"name": "dir:/src/linux"},
    ],
)
def test_other_profile_misses(
    profile: KernelProfile, make: FakeMake, tmp_path: Path, change: dict[str, str]
) -> None:
    build([TARGET], profile, make, tmp_path)
    other = replace(profile, **change)  # type: ignore[arg-type]
    make.profile = other
    _, built, _ = build([TARGET], other, make, tmp_path)
    assert built == ["klp_target"] and len(make.calls) == 2


def test_other_compiler_misses(profile: KernelProfile, make: FakeMake, tmp_path: Path) -> None:
    build([TARGET], profile, make, tmp_path)
    _, built, _ = build([TARGET], profile, make, tmp_path, compiler="gcc (Fake) 13.1.0")
    assert built == ["klp_target"]


def test_key_is_deterministic(profile: KernelProfile) -> None:
    key = module_key("m", "int x;\n", profile, COMPILER)
    assert key == module_key("m", "int x;\n", profile, COMPILER)
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert key != module_key("m", "int y;\n", profile, COMPILER)
    assert key != module_key("n", "int x;\n", profile, COMPILER)


def test_compile_error_names_module_and_log(
    profile: KernelProfile, make: FakeMake, tmp_path: Path
) -> None:
    make.fail_with = f"{tmp_path}/build-x/klp_target.c:28:5: error: expected ';' before '}}'"
    with pytest.raises(HarnessError) as info:
        build([TARGET, PATCH], profile, make, tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("building klp_target for debian-6.1 failed: klp_target.c:28:5:")
    log = Path(re.findall(r"build log: (\S+)\)", message)[0])
    assert make.fail_with in log.read_text()
    # nothing was cached: a fixed build runs make again
    make.fail_with = None
    _, built, _ = build([TARGET, PATCH], profile, make, tmp_path)
    assert built == ["klp_patch", "klp_target"]


def test_unattributable_failure_names_all(
    profile: KernelProfile, make: FakeMake, tmp_path: Path
) -> None:
    make.fail_with = "make[1]: *** No rule to make target 'modules'."
    with pytest.raises(HarnessError, match=r"building klp_patch, klp_target for debian-6.1 failed"):
        build([TARGET, PATCH], profile, make, tmp_path)


def test_wrong_vermagic_is_refused_and_not_cached(
    profile: KernelProfile, make: FakeMake, tmp_path: Path
) -> None:
    make.vermagic = "6.1.0-1-amd64 SMP"
    with pytest.raises(HarnessError, match=r"klp_target: vermagic '6.1.0-1-amd64 SMP' is not"):
        build([TARGET], profile, make, tmp_path)
    make.vermagic = None
    _, built, _ = build([TARGET], profile, make, tmp_path)
    assert built == ["klp_target"]


def test_livepatch_without_modinfo_flag_is_refused(
    profile: KernelProfile, make: FakeMake, tmp_path: Path
) -> None:
    make.livepatch = False
    with pytest.raises(HarnessError, match=r"klp_patch: livepatch module without"):
        build([TARGET, PATCH], profile, make, tmp_path)


def damage_truncate(ko: Path) -> None:
    ko.write_bytes(ko.read_bytes()[:100])


def damage_same_size(ko: Path) -> None:
    data = bytearray(ko.read_bytes())
    data[70:80] = bytes(b ^ 0xFF for b in data[70:80])  # inside .modinfo
    ko.write_bytes(bytes(data))


def damage_empty(ko: Path) -> None:
    ko.write_bytes(b"")


def damage_manifest_missing(ko: Path) -> None:
    (ko.parent / "manifest.json").unlink()


def damage_manifest_truncated(ko: Path) -> None:
    manifest = ko.parent / "manifest.json"
    manifest.write_text(manifest.read_text()[:20])


def damage_vermagic_and_manifest(ko: Path) -> None:
    """Tampered with consistently: checksums match, the .ko checks do not."""
    ko.write_bytes(fake_ko({"vermagic": "5.10.0 SMP"}))
    manifest = ko.parent / "manifest.json"
    data = json.loads(manifest.read_text())
    data["sha256"][ko.name] = hashlib.sha256(ko.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "damage",
    [
        damage_truncate,
        damage_same_size,
        damage_empty,
        damage_manifest_missing,
        damage_manifest_truncated,
        damage_vermagic_and_manifest,
    ],
)
def test_damaged_cache_entry_is_rebuilt(
    profile: KernelProfile, make: FakeMake, tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    kos, _, _ = build([TARGET], profile, make, tmp_path)
    good = kos["klp_target"].read_bytes()
    damage(kos["klp_target"])
    again, built, cached = build([TARGET], profile, make, tmp_path)
    assert built == ["klp_target"] and cached == [] and len(make.calls) == 2
    assert again["klp_target"].read_bytes() == good
    _, built, cached = build([TARGET], profile, make, tmp_path)
    assert built == [] and cached == ["klp_target"]  # the rebuilt entry is trusted
    assert not list((tmp_path / "tmp").iterdir())


def test_entries_record_checksums(profile: KernelProfile, make: FakeMake, tmp_path: Path) -> None:
    kos, _, _ = build([TARGET], profile, make, tmp_path)
    manifest = json.loads((kos["klp_target"].parent / "manifest.json").read_text())
    ko_sum = hashlib.sha256(kos["klp_target"].read_bytes()).hexdigest()
    assert manifest["sha256"]["klp_target.ko"] == ko_sum
    assert "klp_target.c" in manifest["sha256"]


def test_truncated_ko_from_make_is_one_line(
    profile: KernelProfile, make: FakeMake, tmp_path: Path
) -> None:
    real = make.__call__

    def truncating(argv: Sequence[str], cwd: Path) -> tuple[int, str]:
        status, log = real(argv, cwd)
        damage_truncate(cwd / "klp_target.ko")
        return status, log

    with pytest.raises(HarnessError, match=r"^building klp_target for debian-6.1: .*truncated"):
        build_modules([TARGET], profile, cache_dir=tmp_path, make=truncating, compiler=COMPILER)


def test_abandoned_work_dirs_are_swept(
    profile: KernelProfile, make: FakeMake, tmp_path: Path
) -> None:
    """What a SIGKILLed build leaves (its pid is dead) goes; a live build's stays."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    tmp = tmp_path / "tmp"
    for stem in ("build", "stage", "trash"):
        (tmp / f"{stem}-{dead.pid}-abcd1234").mkdir(parents=True)
        (tmp / f"{stem}-{dead.pid}-abcd1234" / "klp_target.c").write_text("half")
    live = tmp / f"build-{os.getpid()}-live0000"
    live.mkdir()
    build([TARGET], profile, make, tmp_path)
    assert sorted(p.name for p in tmp.iterdir()) == [live.name]


def test_interrupted_build_leaves_no_work_dir(
    profile: KernelProfile, make: FakeMake, tmp_path: Path
) -> None:
    def interrupted(argv: Sequence[str], cwd: Path) -> tuple[int, str]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_modules([TARGET], profile, cache_dir=tmp_path, make=interrupted, compiler=COMPILER)
    assert not list((tmp_path / "tmp").iterdir())


def test_negative_jobs_is_refused_before_make(
    profile: KernelProfile, make: FakeMake, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match=r"^-j -1: the number of parallel jobs must be"):
        build_modules([TARGET], profile, cache_dir=tmp_path, make=make, compiler=COMPILER, jobs=-1)
    assert make.calls == []


def test_damaged_sources_dir_is_rewritten(
    profile: KernelProfile, make: FakeMake, tmp_path: Path
) -> None:
    first = build_modules([TARGET], profile, cache_dir=tmp_path, make=make, compiler="x")
    assert first.sources is not None
    (first.sources / "klp_target.c").write_text("truncated")
    again = build_modules([TARGET], profile, cache_dir=tmp_path, make=make, compiler="x")
    assert again.sources == first.sources
    assert "klp_target_init" in (first.sources / "klp_target.c").read_text()


def test_missing_build_tree(profile: KernelProfile, make: FakeMake, tmp_path: Path) -> None:
    (profile.build_dir / "Makefile").unlink()
    with pytest.raises(HarnessError, match="no kernel build tree"):
        build([TARGET], profile, make, tmp_path)


def test_sources_dir_holds_rendered_set(
    profile: KernelProfile, make: FakeMake, tmp_path: Path
) -> None:
    result = build_modules([TARGET, PATCH], profile, cache_dir=tmp_path, make=make, compiler="x")
    assert result.sources is not None
    assert sorted(p.name for p in result.sources.iterdir()) == [
        "Kbuild",
        "klp_patch.c",
        "klp_target.c",
    ]


def test_kernel_module_names_are_refused(
    profile: KernelProfile, make: FakeMake, tmp_path: Path
) -> None:
    profile.modules_dir.mkdir()
    (profile.modules_dir / "modules.order").write_text("kernel/fs/ext4/ext4.ko\n")
    (profile.modules_dir / "modules.builtin").write_text("kernel/lib/klp-builtin.ko\n")
    for name in ("ext4", "klp_builtin"):
        with pytest.raises(UsageError, match=f"module {name}: debian-6.1 has a module of that"):
            build([TargetModule(name, ("f",))], profile, make, tmp_path)
    assert make.calls == []


def test_read_modinfo_repeated_keys(tmp_path: Path) -> None:
    ko = tmp_path / "m.ko"
    ko.write_bytes(fake_ko({"parm": "a:int", "vermagic": "6.1 SMP"}))
    assert read_modinfo(ko) == {"parm": ["a:int"], "vermagic": ["6.1 SMP"]}
    ko.write_bytes(b"not elf")
    with pytest.raises(HarnessError, match="not a 64-bit"):
        read_modinfo(ko)
