"""Shadow variables (kernel/livepatch/shadow.c) and the log lines of a module's shadow
script, in upstream test_klp_shadow_vars' format.

The kernel side is a global table keyed by <obj pointer, id>; nothing in it is freed
when a patch goes away or its module is removed.  Pointers are abstract here: an
object slot or constructor-data slot of one module *instance* (a reloaded module is
assumed to get new addresses), a shadow variable, or a module's ctor/dtor function.

Log lines show pointers the way upstream's module does it, through `ptr_id()`: small
integers in first-use order within one module init, PTR0 = NULL.  Ids are assigned in
the order the values appear in each printed line, except that the constructor data is
registered before the call, as upstream's test does with `ptr_id(pnfields1[i])`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import ScenarioError
from harness.scenario.types import ShadowOp, ShadowOpKind

Pointer = tuple[str, int, int]  # (kind, module instance or 0, slot or serial)
NULL: Pointer = ("null", 0, 0)


@dataclass(eq=False, slots=True)
class ShadowVar:
    obj: Pointer
    id: int
    data: Pointer  # what the constructor stored: the ctor_data slot's pointer
    ptr: Pointer  # the variable itself
    owner: str = ""  # a shadow field's: the patch module that attached it (fields.py)


@dataclass(eq=False)
class ShadowTable:
    """klp_shadow_hash."""

    vars: dict[tuple[Pointer, int], ShadowVar] = field(default_factory=dict)
    serial: int = 0

    def klp_shadow_get(self, obj: Pointer, id: int) -> ShadowVar | None:
        return self.vars.get((obj, id))

    def klp_shadow_alloc(self, obj: Pointer, id: int, data: Pointer) -> ShadowVar:
        """__klp_shadow_get_or_alloc() creating a new variable (ctor stores `data`)."""
        self.serial += 1
        var = ShadowVar(obj, id, data, ("var", 0, self.serial))
        self.vars[(obj, id)] = var
        return var

    def klp_shadow_free(self, obj: Pointer, id: int) -> ShadowVar | None:
        return self.vars.pop((obj, id), None)

    def klp_shadow_free_all(self, id: int) -> list[ShadowVar]:
        freed = [var for var in self.vars.values() if var.id == id]
        for var in freed:
            del self.vars[(var.obj, var.id)]
        return freed


class _PtrIds:
    """upstream's ptr_id(): first-use numbering of pointers within one module init."""

    def __init__(self) -> None:
        self.ids: dict[Pointer, int] = {NULL: 0}

    def __call__(self, ptr: Pointer | None) -> str:
        ptr = NULL if ptr is None else ptr
        if ptr not in self.ids:
            self.ids[ptr] = len(self.ids)
        return f"PTR{self.ids[ptr]}"


def run_shadow_script(
    table: ShadowTable, instance: int, ops: tuple[ShadowOp, ...], where: str
) -> list[str]:
    """Run a module init's shadow operations; return its log lines (without prefix).

    Raises ScenarioError for the two cases a real kernel would not answer
    deterministically or cleanly: alloc of an existing <obj, id> (a WARN with a
    backtrace) and free_all with a destructor over several variables (the destructor
    lines come out in hash-table order)."""
    ptr = _PtrIds()
    lines: list[str] = []
    record: dict[tuple[int, int], ShadowVar] = {}  # the module's own bookkeeping
    ctor = ("ctor", instance, 0)
    dtor_fn = ("dtor", instance, 0)
    for i, op in enumerate(ops):
        obj = ("obj", instance, op.obj)
        data = ("data", instance, op.ctor_data)
        kind = op.kind
        if kind is ShadowOpKind.GET:
            var = table.klp_shadow_get(obj, op.id)
            lines.append(
                f"klp_shadow_get(obj={ptr(obj)}, id=0x{op.id:x}) = {ptr(var.ptr if var else None)}"
            )
            lines.append(_check(ptr, record.get((op.obj, op.id)), var))
        elif kind in (ShadowOpKind.ALLOC, ShadowOpKind.GET_OR_ALLOC):
            ptr(data)  # registered before the call, like upstream's ptr_id(pnfields)
            var = table.klp_shadow_get(obj, op.id)
            name = "alloc" if kind is ShadowOpKind.ALLOC else "get_or_alloc"
            if var is not None and kind is ShadowOpKind.ALLOC:
                raise ScenarioError(
                    f"{where}[{i}]",
                    f"klp_shadow_alloc of an existing <obj {op.obj}, id 0x{op.id:x}> makes "
                    "the kernel WARN (Duplicate shadow variable); use get_or_alloc",
                )
            found = var is not None
            if var is None:
                var = table.klp_shadow_alloc(obj, op.id, data)
                lines.append(f"shadow_ctor: {ptr(var.ptr)} -> {ptr(data)}")
            lines.append(
                f"klp_shadow_{name}(obj={ptr(obj)}, id=0x{op.id:x}, size=8, "
                f"gfp_flags=GFP_KERNEL), ctor={ptr(ctor)}, ctor_data={ptr(data)} = "
                f"{ptr(var.ptr)}"
            )
            if found:
                lines.append(_check(ptr, record.get((op.obj, op.id)), var))
            else:
                record[(op.obj, op.id)] = var
        elif kind is ShadowOpKind.FREE:
            var = table.klp_shadow_free(obj, op.id)
            if var is not None and op.dtor:
                lines.append(f"shadow_dtor(obj={ptr(var.obj)}, shadow_data={ptr(var.ptr)})")
            lines.append(
                f"klp_shadow_free(obj={ptr(obj)}, id=0x{op.id:x}, "
                f"dtor={ptr(dtor_fn if op.dtor else None)})"
            )
            record.pop((op.obj, op.id), None)
        else:
            freed = table.klp_shadow_free_all(op.id)
            if op.dtor and len(freed) > 1:
                raise ScenarioError(
                    f"{where}[{i}]",
                    f"free_all of id 0x{op.id:x} with a destructor frees {len(freed)} "
                    "variables in hash-table order: the log order is not deterministic",
                )
            if op.dtor:
                lines.extend(
                    f"shadow_dtor(obj={ptr(v.obj)}, shadow_data={ptr(v.ptr)})" for v in freed
                )
            lines.append(
                f"klp_shadow_free_all(id=0x{op.id:x}, dtor={ptr(dtor_fn if op.dtor else None)})"
            )
            for key in [k for k in record if k[1] == op.id]:
                del record[key]
    return lines


def _check(ptr: _PtrIds, expected: ShadowVar | None, got: ShadowVar | None) -> str:
    """The line a get/get_or_alloc logs after comparing with the module's record."""
    if expected is None and got is None:
        return "  got expected NULL result"
    if got is not None and got is expected:
        return f"  got expected {ptr(got.ptr)} -> {ptr(got.data)} result"
    if got is None:
        return "  got unexpected NULL result"
    return f"  got unexpected {ptr(got.ptr)} -> {ptr(got.data)} result"
