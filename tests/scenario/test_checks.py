"""Every kind of bad module description is rejected with one line naming the field."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.errors import ScenarioError
from harness.scenario.checks import check_c_identifier, validate_modules
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

ALL_CBS = frozenset(Callback)
TARGET = TargetModule(
    name="klp_target",
    funcs=("alpha", "beta", "gamma"),
    blocker=Blocker(func="alpha"),
    shadow=(ShadowOp(ShadowOpKind.ALLOC, id=0x1234, obj=1, ctor_data=1),),
)
PATCH = PatchModule(
    name="klp_patch",
    objects=(
        PatchObject(VMLINUX, ("cmdline_proc_show",), ALL_CBS),
        PatchObject("klp_target", ("alpha", "beta"), frozenset({Callback.PRE_PATCH})),
    ),
    replace=True,
    pre_patch_ret=-19,
    states=(KlpState(1, 1), KlpState(2, 3)),
    shadow=(
        ShadowOp(ShadowOpKind.GET, id=1, obj=2),
        ShadowOp(ShadowOpKind.FREE, id=1, obj=2, dtor=True),
        ShadowOp(ShadowOpKind.FREE_ALL, id=1, dtor=True),
    ),
)


def expect(where: str, targets: list[TargetModule], patches: list[PatchModule]) -> str:
    with pytest.raises(ScenarioError) as info:
        validate_modules(targets, patches)
    assert info.value.where == where, str(info.value)
    assert "\n" not in str(info.value)
    return info.value.message


def with_object(j: int, **changes: object) -> PatchModule:
    objects = list(PATCH.objects)
    objects[j] = replace(objects[j], **changes)  # type: ignore[arg-type]
    return replace(PATCH, objects=tuple(objects))


def test_valid_description_passes() -> None:
    validate_modules([TARGET], [PATCH])
    validate_modules([], [])
    validate_modules([TargetModule("t", ())], [PatchModule("p", ())])


@pytest.mark.parametrize(
    "name",
    [
        "",
        "1abc",
        "a-b",
        "a b",
        'x"); evil(); ("',
        "a\n",
        "caf\u00e9",
        "a\x00b",
        "int",
        "return",
        "__foo",
        "_Foo",
        "klp_harness_state",
        "x" * 65,
        3,
        None,
    ],
)
def test_check_c_identifier_rejects(name: object) -> None:
    with pytest.raises(ScenarioError) as info:
        check_c_identifier(name, "here")
    assert info.value.where == "here"


@pytest.mark.parametrize("name", ["a", "_a", "abc_123", "A", "x" * 64, "klp_target"])
def test_check_c_identifier_accepts(name: str) -> None:
    assert check_c_identifier(name, "here") == name


def test_bad_target_name() -> None:
    expect("target[0].name", [replace(TARGET, name="bad-name")], [])
    expect("target[0].name", [replace(TARGET, name="vmlinux")], [])


def test_module_name_length_limit() -> None:
    validate_modules([replace(TARGET, name="m" * 55)], [])
    msg = expect("target[0].name", [replace(TARGET, name="m" * 56)], [])
    assert "55" in msg
    expect("patch[0].name", [TARGET], [replace(PATCH, name="p" * 56)])


def test_bad_func_name() -> None:
    expect("target[0].funcs[2]", [replace(TARGET, funcs=("alpha", "beta", "ga;ma"))], [])
    expect("target[0].funcs[1]", [replace(TARGET, funcs=("alpha", "f" * 65))], [])


def test_duplicate_module_names() -> None:
    msg = expect("target[1].name", [TARGET, replace(TARGET, blocker=None)], [])
    assert "target[0].name" in msg
    expect("patch[0].name", [TARGET], [replace(PATCH, name="klp_target")])
    expect("patch[1].name", [TARGET], [PATCH, PATCH])


def test_duplicate_func_in_target() -> None:
    expect("target[0].funcs[2]", [replace(TARGET, funcs=("alpha", "beta", "alpha"))], [])


def test_duplicate_func_in_object() -> None:
    patch = with_object(1, funcs=("alpha", "alpha"))
    expect("patch[0].object[1].funcs[1]", [TARGET], [patch])


def test_duplicate_object() -> None:
    patch = replace(PATCH, objects=(*PATCH.objects, PatchObject("klp_target")))
    expect("patch[0].object[2].name", [TARGET], [patch])
    patch = replace(PATCH, objects=(*PATCH.objects, PatchObject(VMLINUX)))
    expect("patch[0].object[2].name", [TARGET], [patch])


def test_object_not_a_target() -> None:
    # a module of the kernel: its functions are checked against a profile's symbols
    validate_modules([TARGET], [with_object(1, name="other_mod", funcs=("__do_thing",))])
    expect("patch[0].object[1].name", [TARGET], [with_object(1, name="bad name")])
    expect("patch[0].object[1].name", [TARGET], [with_object(1, name="o" * 56)])


def test_func_not_defined_by_target() -> None:
    patch = with_object(1, funcs=("alpha", "delta"))
    msg = expect("patch[0].object[1].funcs[1]", [TARGET], [patch])
    assert "alpha, beta, gamma" in msg


def test_vmlinux_funcs_are_symbol_names() -> None:
    validate_modules([TARGET], [with_object(0, funcs=("schedule", "__x64_sys_getpid"))])
    expect("patch[0].object[0].funcs[0]", [TARGET], [with_object(0, funcs=("a.isra.0",))])
    expect("patch[0].object[0].funcs[0]", [TARGET], [with_object(0, funcs=("klp_harness_x",))])
    expect("patch[0].object[0].funcs[1]", [TARGET], [with_object(0, funcs=("f", "f"))])


@pytest.mark.parametrize("ret", [1, -134, -200, -41, -58, True, "x", 0.5])
def test_bad_pre_patch_ret(ret: object) -> None:
    # -41 and -58 are holes in Linux's errno table (EWOULDBLOCK/EDEADLOCK are aliases).
    expect("patch[0].pre_patch_ret", [TARGET], [replace(PATCH, pre_patch_ret=ret)])  # type: ignore[arg-type]


@pytest.mark.parametrize("ret", [0, -1, -19, -22, -132])
def test_good_pre_patch_ret(ret: int) -> None:
    validate_modules([TARGET], [replace(PATCH, pre_patch_ret=ret)])


@pytest.mark.parametrize(
    ("state", "field"),
    [
        (KlpState(0, 1), "id"),
        (KlpState(-1, 1), "id"),
        (KlpState(2**31, 1), "id"),
        (KlpState(1, -1), "version"),
        (KlpState(1, 2**31), "version"),
        (KlpState(True, 1), "id"),
        (KlpState(1, "2"), "version"),  # type: ignore[arg-type]
    ],
)
def test_state_range(state: KlpState, field: str) -> None:
    expect(f"patch[0].states[0].{field}", [TARGET], [replace(PATCH, states=(state,))])


def test_state_extremes_ok() -> None:
    validate_modules([TARGET], [replace(PATCH, states=(KlpState(2**31 - 1, 0),))])


def test_duplicate_state_id() -> None:
    patch = replace(PATCH, states=(KlpState(5, 1), KlpState(5, 2)))
    expect("patch[0].states[1].id", [TARGET], [patch])


def test_states_need_vmlinux_with_all_callbacks() -> None:
    expect("patch[0].states", [TARGET], [with_object(0, callbacks=frozenset({Callback.PRE_PATCH}))])
    no_vmlinux = replace(PATCH, objects=PATCH.objects[1:])
    expect("patch[0].states", [TARGET], [no_vmlinux])
    validate_modules([TARGET], [replace(no_vmlinux, states=())])


def test_blocker_func_must_be_a_target_func() -> None:
    expect("target[0].blocker", [replace(TARGET, blocker=Blocker(func="delta"))], [])


def test_blocker_param_is_identifier() -> None:
    bad = replace(TARGET, blocker=Blocker(func="alpha", param="x=1"))
    expect("target[0].blocker_param", [bad], [])


@pytest.mark.parametrize(
    ("op", "field"),
    [
        (ShadowOp(ShadowOpKind.GET, id=-1, obj=1), "id"),
        (ShadowOp(ShadowOpKind.GET, id=2**31, obj=1), "id"),
        (ShadowOp(ShadowOpKind.GET, id=1, obj=0), "obj"),
        (ShadowOp(ShadowOpKind.GET, id=1, obj=17), "obj"),
        (ShadowOp(ShadowOpKind.FREE_ALL, id=1, obj=1), "obj"),
        (ShadowOp(ShadowOpKind.ALLOC, id=1, obj=1, ctor_data=0), "ctor_data"),
        (ShadowOp(ShadowOpKind.GET_OR_ALLOC, id=1, obj=1, ctor_data=17), "ctor_data"),
        (ShadowOp(ShadowOpKind.GET, id=1, obj=1, ctor_data=1), "ctor_data"),
        (ShadowOp(ShadowOpKind.GET, id=1, obj=1, dtor=True), "dtor"),
        (ShadowOp("bogus", id=1, obj=1), "op"),  # type: ignore[arg-type]
    ],
)
def test_bad_shadow_ops(op: ShadowOp, field: str) -> None:
    expect(f"target[0].shadow[0].{field}", [replace(TARGET, shadow=(op,))], [])
    expect(f"patch[0].shadow[0].{field}", [TARGET], [replace(PATCH, shadow=(op,))])


def test_unknown_callback() -> None:
    patch = with_object(1, callbacks=frozenset({"pre_patch"}))
    expect("patch[0].object[1].callbacks", [TARGET], [patch])


def test_replace_must_be_bool() -> None:
    expect("patch[0].replace", [TARGET], [replace(PATCH, replace=1)])  # type: ignore[arg-type]
