"""Every module feature at once builds without warnings against each kernel profile.

Needs the profiles' headers (`make setup`); deselect with `-m 'not kbuild'`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.kernel.profiles import load_profile, profile_names
from harness.modules.build import build_modules, read_modinfo
from harness.scenario.types import (
    VMLINUX,
    Blocker,
    Callback,
    KlpState,
    PatchModule,
    PatchObject,
    ShadowOp,
    ShadowOpKind,
    TargetModule,
)

pytestmark = pytest.mark.kbuild

ALL = frozenset(Callback)


SHADOW = (
    ShadowOp(ShadowOpKind.GET, 0x1234, obj=1),
    ShadowOp(ShadowOpKind.ALLOC, 0x1234, obj=1, ctor_data=1),
    ShadowOp(ShadowOpKind.GET_OR_ALLOC, 0x1234, obj=1, ctor_data=2),
    ShadowOp(ShadowOpKind.GET_OR_ALLOC, 0x1235, obj=2, ctor_data=2),
    ShadowOp(ShadowOpKind.FREE, 0x1234, obj=1, dtor=True),
    ShadowOp(ShadowOpKind.FREE_ALL, 0x1235, dtor=True),
)
# `gamma` is also a compiler builtin: the Kbuild must keep that quiet.
TARGET = TargetModule(
    "klp_kb_target", ("alpha", "beta", "gamma"), Blocker("alpha"), log_init_exit=True, shadow=SHADOW
)
EMPTY_TARGET = TargetModule("klp_kb_idle", log_init_exit=False)
PATCH = PatchModule(
    "klp_kb_patch",
    (
        PatchObject(VMLINUX, ("cmdline_proc_show", "meminfo_proc_show"), ALL),
        PatchObject("klp_kb_target", ("alpha", "beta"), ALL, klp_relocs=True),
        PatchObject("klp_kb_idle", (), frozenset({Callback.PRE_PATCH})),
    ),
    replace=True,
    states=(KlpState(1, 2), KlpState(2, 1)),
    shadow=(ShadowOp(ShadowOpKind.GET, 0x77, obj=3),),
)
FAILING = PatchModule(
    "klp_kb_failing",
    (PatchObject("klp_kb_target", ("gamma",), frozenset({Callback.PRE_PATCH})),),
    pre_patch_ret=-19,
)
MODULES = (TARGET, EMPTY_TARGET, PATCH, FAILING)


@pytest.mark.parametrize("profile_name", profile_names())
def test_every_feature_builds_cleanly(profile_name: str, tmp_path: Path) -> None:
    profile = load_profile(profile_name)
    result = build_modules(MODULES, profile, cache_dir=tmp_path)
    assert sorted(result.built) == sorted(m.name for m in MODULES)
    assert result.warnings == {}
    assert result.log is not None
    log = result.log.read_text().split("\n", 1)[1]  # what make printed, not its command
    assert "warning" not in log.lower(), log
    assert "error" not in log.lower(), log
    modinfo = shutil.which("modinfo") or next(
        (p for p in ("/usr/sbin/modinfo", "/sbin/modinfo") if Path(p).exists()), None
    )
    for module in MODULES:
        ko = result.modules[module.name]
        info = read_modinfo(ko)
        assert info["name"] == [module.name]
        assert info["vermagic"][0].strip() == profile.vermagic
        assert info["license"] == ["GPL"]
        livepatch = isinstance(module, PatchModule)
        assert info.get("livepatch") == (["Y"] if livepatch else None)
        if modinfo:  # the real tool agrees with our reader
            out = subprocess.run(
                [modinfo, "-F", "vermagic", str(ko)], capture_output=True, text=True, check=True
            )
            assert out.stdout.strip() == profile.vermagic
            out = subprocess.run(
                [modinfo, "-F", "livepatch", str(ko)], capture_output=True, text=True, check=True
            )
            assert out.stdout.strip() == ("Y" if livepatch else "")
    params = read_modinfo(result.modules["klp_kb_patch"])["parm"]
    assert any(p.startswith("replace:") for p in params)
    assert any(p.startswith("pre_patch_ret:") for p in params)
    target_params = read_modinfo(result.modules["klp_kb_target"])["parm"]
    assert any(p.startswith("block_transition:") for p in target_params)

    again = build_modules(MODULES, profile, cache_dir=tmp_path)
    assert again.built == [] and again.modules == result.modules


@pytest.mark.parametrize("profile_name", profile_names())
def test_functions_keep_their_names(profile_name: str, tmp_path: Path) -> None:
    """Livepatch finds functions by symbol name: no .constprop/.isra clones, no merging."""
    profile = load_profile(profile_name)
    result = build_modules([TARGET], profile, cache_dir=tmp_path)
    nm = subprocess.run(
        ["nm", str(result.modules[TARGET.name])], capture_output=True, text=True, check=True
    )
    symbols = {line.split()[-1] for line in nm.stdout.splitlines()}
    for func in TARGET.funcs:
        assert func in symbols
        assert not any(s.startswith(f"{func}.") for s in symbols), symbols


K = ShadowOpKind
# Each optional part alone: whatever the templates leave out must not leave anything
# unused behind (an unused static is a warning).
MINIMAL = (
    TargetModule("klp_kb_get", shadow=(ShadowOp(K.GET, 1, obj=1),)),
    TargetModule("klp_kb_alloc", shadow=(ShadowOp(K.ALLOC, 1, obj=1, ctor_data=1),)),
    TargetModule("klp_kb_goa", shadow=(ShadowOp(K.GET_OR_ALLOC, 1, obj=1, ctor_data=1),)),
    TargetModule("klp_kb_free", shadow=(ShadowOp(K.FREE, 1, obj=1),)),
    TargetModule("klp_kb_freed", shadow=(ShadowOp(K.FREE, 1, obj=1, dtor=True),)),
    TargetModule("klp_kb_free_all", shadow=(ShadowOp(K.FREE_ALL, 1),)),
    TargetModule("klp_kb_free_all_d", shadow=(ShadowOp(K.FREE_ALL, 1, dtor=True),)),
    TargetModule("klp_kb_block", ("f",), Blocker("f", "hold"), log_init_exit=False),
    PatchModule("klp_kb_nothing", ()),
    PatchModule("klp_kb_one_cb", (PatchObject(VMLINUX, (), frozenset({Callback.POST_PATCH})),)),
    PatchModule("klp_kb_state", (PatchObject(VMLINUX, (), ALL),), states=(KlpState(3, 0),)),
    PatchModule("klp_kb_proc", (PatchObject(VMLINUX, ("meminfo_proc_show",)),)),
    PatchModule("klp_kb_func", (PatchObject("klp_kb_block", ("f",)),)),
)


@pytest.mark.parametrize("profile_name", profile_names())
def test_each_part_alone_builds_cleanly(profile_name: str, tmp_path: Path) -> None:
    result = build_modules(MINIMAL, load_profile(profile_name), cache_dir=tmp_path)
    assert result.warnings == {}
    assert result.log is not None
    log = result.log.read_text().lower().split("\n", 1)[1]  # make's output, not its command
    assert "warning" not in log and "error" not in log, log


# Function names that are also names of parameters and locals in the templates: the
# generated code must not shadow them (a blocker function called `work` once failed).
LOCAL_NAMES = ("work", "m", "val", "kp", "ret", "func", "park", "data", "obj")
SHADOWING_TARGET = TargetModule("klp_kb_names", LOCAL_NAMES, Blocker("work"))
SHADOWING_PATCH = PatchModule(
    "klp_kb_names_patch", (PatchObject("klp_kb_names", LOCAL_NAMES, ALL),)
)


@pytest.mark.parametrize("profile_name", profile_names())
def test_function_names_like_template_locals_build(profile_name: str, tmp_path: Path) -> None:
    result = build_modules(
        (SHADOWING_TARGET, SHADOWING_PATCH), load_profile(profile_name), cache_dir=tmp_path
    )
    assert result.warnings == {}
    assert sorted(result.modules) == ["klp_kb_names", "klp_kb_names_patch"]


def test_newer_kernels_build_in_their_release_s_root(tmp_path: Path) -> None:
    """debian-7.3's modules are built by the kernel's own gcc-14 in a trixie build
    root (its kbuild tools need trixie's libc); the root is made once and reused."""
    from harness.kernel import buildroot
    from harness.modules.kbuild import compiler_for, compiler_id

    profile = load_profile("debian-7.3")
    root = buildroot.root_for(profile)
    assert root is not None and root.name.startswith("trixie-")
    marker = (root / buildroot.MARKER).stat().st_mtime_ns
    assert buildroot.root_for(profile) == root
    assert (root / buildroot.MARKER).stat().st_mtime_ns == marker
    cc = compiler_for(profile)
    assert cc == "x86_64-linux-gnu-gcc-14"
    assert compiler_id(cc, root).endswith(profile_config_gcc(profile))
    result = build_modules([EMPTY_TARGET], profile, cache_dir=tmp_path)
    assert result.log is not None
    assert result.log.read_text().startswith("$ bwrap ")
    assert buildroot.suite_for(load_profile("debian-6.12")) is None


def profile_config_gcc(profile: object) -> str:
    """`14.2.0` from CONFIG_CC_VERSION_TEXT="x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0"."""
    from harness.kernel.profiles import KernelProfile, read_config

    assert isinstance(profile, KernelProfile)
    return read_config(profile.config)["CONFIG_CC_VERSION_TEXT"].strip('"').split()[-1]
