"""Validation of module descriptions before anything reaches C source.

Every string in a `TargetModule`/`PatchModule` ends up verbatim in generated C (as an
identifier, a string literal, a module name, a debugfs path), so instead of escaping we
accept only what is safe by construction: ASCII C identifiers of bounded length that are
not C keywords and not in the namespace the templates use for their own helpers.  Every
number that reaches C is range-checked for the same reason.  Cross references (a patch
object naming a target, a func the target must define, a blocker func) are resolved
here, so the renderer and the reference model can trust a `Scenario` completely.

Errors are `ScenarioError(where, message)` with `where` a path into the description as
the scenario file spells it (`target[0].funcs[2]`, `patch[1].object[0].name`), so the
loader can attribute them to a file and the user sees one line naming the field.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Sequence

from harness.errors import ScenarioError
from harness.scenario.types import (
    VMLINUX,
    VMLINUX_FUNCS,
    Callback,
    FuncSpec,
    PatchModule,
    PatchObject,
    ShadowOp,
    ShadowOpKind,
    TargetModule,
)

# include/linux/module.h: MODULE_NAME_LEN = 64 - sizeof(unsigned long) = 56 on 64-bit,
# including the terminating NUL.
MODULE_NAME_MAX = 55
# Far below KSYM_NAME_LEN (128 on 6.1); keeps log lines and debugfs paths readable.
FUNC_NAME_MAX = 64
PARAM_NAME_MAX = 64

# klp_state.id is an unsigned long and klp_state.version an int; we keep both within a
# non-negative int so they print the same way everywhere.  Id 0 is reserved: it is what
# an unused (zeroed) state slot looks like.
STATE_ID_MIN, STATE_ID_MAX = 1, 2**31 - 1
STATE_VERSION_MIN, STATE_VERSION_MAX = 0, 2**31 - 1
# Shadow variable ids are unsigned long; a non-negative int is plenty.
SHADOW_ID_MIN, SHADOW_ID_MAX = 0, 2**31 - 1
# Shadow ops name parent objects and constructor data slots by small integers; the
# templates declare that many static slots.
SHADOW_SLOT_MIN, SHADOW_SLOT_MAX = 1, 16
# Linux errnos run from EPERM (1) to EHWPOISON (133).
ERRNO_MAX = 133

# Prefix of every identifier the templates define themselves; a user name using it could
# collide with generated code.
RESERVED_PREFIX = "klp_harness"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A real kernel function's name (kallsyms keeps up to KSYM_NAME_LEN - 1 = 127 on 6.1).
SYMBOL_NAME_MAX = 127
SYMPOS_MAX = 2**31 - 1
# A header a body may include: `linux/seq_file.h`, `net/sock.h`, ...
_HEADER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./+-]*\.h")

# C11 keywords plus GNU spellings the kernel compiles with; any of these as a function or
# parameter name would not compile (or would mean something else).
_KEYWORDS = """
auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef
union unsigned void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic
_Imaginary _Noreturn _Static_assert _Thread_local asm typeof bool true false NULL
"""
C_KEYWORDS = frozenset(_KEYWORDS.split())

_OBJ_KINDS = frozenset(
    {ShadowOpKind.GET, ShadowOpKind.ALLOC, ShadowOpKind.GET_OR_ALLOC, ShadowOpKind.FREE}
)
_CTOR_KINDS = frozenset({ShadowOpKind.ALLOC, ShadowOpKind.GET_OR_ALLOC})
_DTOR_KINDS = frozenset({ShadowOpKind.FREE, ShadowOpKind.FREE_ALL})


def check_c_identifier(value: object, where: str, max_len: int = FUNC_NAME_MAX) -> str:
    """Return `value` if it is an ASCII C identifier safe to paste into generated C.

    Rejects non-strings, anything outside [A-Za-z_][A-Za-z0-9_]*, C keywords, names the
    C standard reserves (leading `__` or `_` + capital), names in the templates' own
    `klp_harness` namespace, and names longer than `max_len`."""
    if not isinstance(value, str):
        raise ScenarioError(where, f"expected a name (string), got {type(value).__name__}")
    if not value:
        raise ScenarioError(where, "name is empty")
    if not _IDENTIFIER.fullmatch(value):
        raise ScenarioError(
            where, f"{value!r} is not a C identifier (letters, digits, '_'; not a digit first)"
        )
    if len(value) > max_len:
        raise ScenarioError(where, f"{value!r} is {len(value)} characters long (max {max_len})")
    if value in C_KEYWORDS:
        raise ScenarioError(where, f"{value!r} is a C keyword")
    if value.startswith("__") or re.match(r"_[A-Z]", value):
        raise ScenarioError(where, f"{value!r} is a reserved C identifier")
    if value.lower().startswith(RESERVED_PREFIX):
        raise ScenarioError(where, f"{value!r}: names starting {RESERVED_PREFIX!r} are reserved")
    return value


def check_symbol_name(value: object, where: str) -> str:
    """The name of a real kernel function: any C identifier (leading underscores
    included, as `__x64_sys_getpid`), not in the templates' namespace."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ScenarioError(
            where,
            f"{value!r} is not a function name (letters, digits, '_'; compiler clones "
            "such as .isra/.constprop/.part are not supported)",
        )
    if len(value) > SYMBOL_NAME_MAX:
        raise ScenarioError(where, f"{value!r} is longer than {SYMBOL_NAME_MAX} characters")
    if value.lower().startswith(RESERVED_PREFIX):
        raise ScenarioError(where, f"{value!r}: names starting {RESERVED_PREFIX!r} are reserved")
    return value


def check_module_name(value: object, where: str) -> str:
    """A module name: a C identifier of at most MODULE_NAME_MAX characters, not `vmlinux`."""
    name = check_c_identifier(value, where, MODULE_NAME_MAX)
    if name == VMLINUX:
        raise ScenarioError(where, f"{VMLINUX!r} cannot be a module name")
    return name


def check_int(value: object, where: str, low: int, high: int, what: str) -> int:
    """An int (not a bool) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(where, f"{what} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ScenarioError(where, f"{what} {value} out of range ({low}..{high})")
    return value


def check_errno(value: object, where: str) -> int:
    """0 or a negative errno that Linux defines (as Python's errno module knows them)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(where, f"expected 0 or a negative errno, got {value!r}")
    if value == 0:
        return 0
    if value > 0:
        raise ScenarioError(where, f"{value} is positive: errnos are returned negated")
    if -value > ERRNO_MAX or -value not in errno.errorcode:
        raise ScenarioError(where, f"{value} is not a known negative errno")
    return value


def validate_modules(targets: Sequence[TargetModule], patches: Sequence[PatchModule]) -> None:
    """Check a scenario's module descriptions; raise ScenarioError on the first problem."""
    seen: dict[str, str] = {}

    def claim(name: str, where: str) -> None:
        if name in seen:
            raise ScenarioError(where, f"duplicate module name {name!r} (also {seen[name]})")
        seen[name] = where

    target_funcs: dict[str, tuple[str, ...]] = {}
    for i, target in enumerate(targets):
        where = f"target[{i}]"
        claim(check_module_name(target.name, f"{where}.name"), f"{where}.name")
        _check_target(target, where)
        if not target.ko:  # a file's functions are the kernel's to resolve
            target_funcs[target.name] = target.funcs
    for i, patch in enumerate(patches):
        where = f"patch[{i}]"
        claim(check_module_name(patch.name, f"{where}.name"), f"{where}.name")
        if not patch.ko:  # a file's structure is what it is: the kernel judges it
            _check_patch(patch, where, target_funcs)


def _check_func_list(funcs: Sequence[str], where: str) -> None:
    names: set[str] = set()
    for j, func in enumerate(funcs):
        fwhere = f"{where}[{j}]"
        check_c_identifier(func, fwhere)
        if func in names:
            raise ScenarioError(fwhere, f"duplicate function {func!r}")
        names.add(func)


def _check_target(target: TargetModule, where: str) -> None:
    _check_func_list(target.funcs, f"{where}.funcs")
    if target.blocker is not None and not target.ko:
        blocker = target.blocker
        if blocker.func not in target.funcs:
            raise ScenarioError(
                f"{where}.blocker",
                f"{blocker.func!r} is not one of {target.name}'s funcs",
            )
        check_c_identifier(blocker.param, f"{where}.blocker_param", PARAM_NAME_MAX)
    if target.spinner is not None:
        if target.spinner.func not in target.funcs:
            raise ScenarioError(
                f"{where}.spinner.func",
                f"{target.spinner.func!r} is not one of {target.name}'s funcs",
            )
        spinner = target.spinner
        if spinner.rcu_tasks_qs and (spinner.inside or not spinner.cond_resched):
            raise ScenarioError(
                f"{where}.spinner.rcu_tasks_qs",
                "only a spinner between calls with cond_resched calls cond_resched_tasks_rcu_qs()",
            )
        if target.blocker is not None:
            # a patch's replacement of a spun-in function reads a spinner's 3 flags
            # through the pointer it is given; the blocker passes a single bool
            raise ScenarioError(f"{where}.spinner", "a target has a blocker or a spinner, not both")
    _check_shadow(target.shadow, f"{where}.shadow")
    if target.kprobe is not None and target.kprobe.func not in VMLINUX_FUNCS:
        # the model knows every call of these (file reads of call steps and
        # observations); a kprobe elsewhere could be hit by anything
        raise ScenarioError(
            f"{where}.kprobe.func",
            f"{target.kprobe.func!r}: a kprobe goes on one of {', '.join(VMLINUX_FUNCS)}",
        )
    if target.kprobe is not None and not isinstance(target.kprobe.post_handler, bool):
        raise ScenarioError(f"{where}.kprobe.post_handler", "expected true/false")


def _check_patch(patch: PatchModule, where: str, target_funcs: dict[str, tuple[str, ...]]) -> None:
    check_errno(patch.pre_patch_ret, f"{where}.pre_patch_ret")
    if not isinstance(patch.replace, bool):
        raise ScenarioError(f"{where}.replace", f"expected true/false, got {patch.replace!r}")
    objects: set[str] = set()
    for j, obj in enumerate(patch.objects):
        owhere = f"{where}.object[{j}]"
        if obj.name != VMLINUX:
            check_module_name(obj.name, f"{owhere}.name")
        if obj.name in objects:
            raise ScenarioError(f"{owhere}.name", f"duplicate object {obj.name!r}")
        objects.add(obj.name)
        if obj.name in target_funcs:
            _check_func_list(obj.funcs, f"{owhere}.funcs")
            known = target_funcs[obj.name]
            for k, func in enumerate(obj.funcs):
                if func not in known:
                    choices = ", ".join(known) or "none"
                    raise ScenarioError(
                        f"{owhere}.funcs[{k}]",
                        f"{obj.name} does not define {func!r} (it defines: {choices})",
                    )
        else:  # vmlinux or a module of the kernel: checked against the profile's symbols
            _check_real_funcs(obj.funcs, f"{owhere}.funcs")
        _check_specs(obj.funcs, obj.specs, f"{owhere}.funcs", obj.name in target_funcs)
        if obj.shadow_field is not None:
            _check_field(obj, owhere, obj.name in target_funcs)
        if obj.klp_relocs:
            _check_relocs(obj, owhere, obj.name in target_funcs)
        for cb in obj.callbacks:
            if not isinstance(cb, Callback):
                raise ScenarioError(f"{owhere}.callbacks", f"unknown callback {cb!r}")
    _check_states(patch, where)
    _check_shadow(patch.shadow, f"{where}.shadow")


def _check_field(obj: PatchObject, where: str, target: bool) -> None:
    """A shadow field goes on a generated target's per-function structure."""
    check_int(obj.shadow_field, f"{where}.shadow_field", 1, SHADOW_ID_MAX, "shadow id")
    if not target:
        raise ScenarioError(
            f"{where}.shadow_field", "a shadow field goes on a target's objects (a [[target]])"
        )
    if not obj.funcs:
        raise ScenarioError(
            f"{where}.shadow_field", "the object patches no function to attach it to"
        )


def _check_relocs(obj: PatchObject, where: str, target: bool) -> None:
    """klp relocations reach a generated target's static `klp_harness_calls`, which
    exists when the target defines functions, and the object's replacements read it."""
    if not isinstance(obj.klp_relocs, bool):
        raise ScenarioError(f"{where}.klp_relocs", f"expected true/false, got {obj.klp_relocs!r}")
    if not target:
        raise ScenarioError(
            f"{where}.klp_relocs",
            "klp relocations reach a generated target's symbols (a [[target]] without ko)",
        )
    if not obj.funcs:
        raise ScenarioError(f"{where}.klp_relocs", "the object patches no function to read them")


def _check_real_funcs(funcs: Sequence[str], where: str) -> None:
    names: set[str] = set()
    for j, func in enumerate(funcs):
        check_symbol_name(func, f"{where}[{j}]")
        if func in names:
            raise ScenarioError(f"{where}[{j}]", f"duplicate function {func!r}")
        names.add(func)


def _check_specs(
    funcs: Sequence[str], specs: Sequence[FuncSpec], where: str, generated: bool
) -> None:
    del generated  # targets and real objects take the same keys
    """sympos in range, header names.  A generated target defines each name once, so
    a sympos above 1 there is how a scenario makes the kernel's symbol resolution
    fail (the model predicts its error lines); a real function's is checked against
    the profile's symbols (harness.symbols.validate)."""
    for spec in specs:
        fwhere = f"{where}[{list(funcs).index(spec.name)}]"
        check_int(spec.sympos, f"{fwhere}.sympos", 0, SYMPOS_MAX, "sympos")
        if spec.body is None:
            continue
        if not spec.body.code.strip():
            raise ScenarioError(f"{fwhere}.body", "is empty: write the function's definition")
        for h, header in enumerate(spec.body.headers):
            if not _HEADER.fullmatch(header) or ".." in header.split("/"):
                raise ScenarioError(
                    f"{fwhere}.headers[{h}]",
                    f"{header!r} is not a header name such as 'linux/seq_file.h'",
                )


def _check_states(patch: PatchModule, where: str) -> None:
    ids: set[int] = set()
    for j, state in enumerate(patch.states):
        swhere = f"{where}.states[{j}]"
        check_int(state.id, f"{swhere}.id", STATE_ID_MIN, STATE_ID_MAX, "state id")
        check_int(
            state.version,
            f"{swhere}.version",
            STATE_VERSION_MIN,
            STATE_VERSION_MAX,
            "state version",
        )
        if state.id in ids:
            raise ScenarioError(f"{swhere}.id", f"duplicate state id {state.id}")
        ids.add(state.id)
    if not patch.states:
        return
    vmlinux = next((o for o in patch.objects if o.name == VMLINUX), None)
    if vmlinux is None or set(vmlinux.callbacks) != set(Callback):
        raise ScenarioError(
            f"{where}.states",
            f"a patch with states needs a {VMLINUX!r} object with all four callbacks "
            "(they allocate, take over and free the state)",
        )


def _check_shadow(ops: Sequence[ShadowOp], where: str) -> None:
    for j, op in enumerate(ops):
        owhere = f"{where}[{j}]"
        if not isinstance(op.kind, ShadowOpKind):
            raise ScenarioError(f"{owhere}.op", f"unknown shadow op {op.kind!r}")
        check_int(op.id, f"{owhere}.id", SHADOW_ID_MIN, SHADOW_ID_MAX, "shadow id")
        if op.kind in _OBJ_KINDS:
            check_int(op.obj, f"{owhere}.obj", SHADOW_SLOT_MIN, SHADOW_SLOT_MAX, "obj")
        elif op.obj != 0:
            raise ScenarioError(f"{owhere}.obj", f"{op.kind.value} takes no obj")
        if op.kind in _CTOR_KINDS:
            check_int(
                op.ctor_data,
                f"{owhere}.ctor_data",
                SHADOW_SLOT_MIN,
                SHADOW_SLOT_MAX,
                "ctor_data",
            )
        elif op.ctor_data != 0:
            raise ScenarioError(f"{owhere}.ctor_data", f"{op.kind.value} takes no ctor_data")
        if not isinstance(op.dtor, bool):
            raise ScenarioError(f"{owhere}.dtor", f"expected true/false, got {op.dtor!r}")
        if op.dtor and op.kind not in _DTOR_KINDS:
            raise ScenarioError(f"{owhere}.dtor", f"{op.kind.value} takes no destructor")
