"""Symbol resolution of a patch's funcs (6.1 kernel/livepatch/core.c:162-197
`klp_find_object_symbol`, called by `klp_init_object_loaded` at :814, for a loaded
object in `klp_init_object` (:869, from klp_enable_patch) and for a module that comes
later in `klp_module_coming` (:1217); the same lines in 6.12 (:182-187, :915, :1263)
and 7.3 (:180-185, :937, :1298)).

What the model knows of an object's symbols: a generated target defines each of its
funcs once; a target given as a file has the function symbols of its .symtab, which
the kernel keeps in that order for the module's kallsyms (kernel/module/kallsyms.c);
a function of vmlinux or of a module of the kernel was checked against the profile's
symbols before the run (harness/symbols), so it resolves.
"""

from __future__ import annotations

import errno

from harness.model.kernel.klp import KlpFunc, KlpObject
from harness.model.kernel.relocs import klp_apply_object_relocs
from harness.model.kernel.system import Kernel
from harness.scenario.types import TargetModule


def symbol_count(k: Kernel, obj: KlpObject, name: str) -> int | None:
    """How many times the object defines `name`; None when the model takes the
    profile's word for it (vmlinux, modules of the kernel)."""
    if not obj.is_module or obj.mod is None:
        return None
    desc = obj.mod.desc
    if isinstance(desc, TargetModule) and desc.ko:
        return desc.symbols.count(name)
    if isinstance(desc, TargetModule):
        return 1 if name in desc.funcs else 0
    return None


def klp_find_object_symbol(k: Kernel, obj: KlpObject, func: KlpFunc) -> int:
    """0, or -EINVAL with the kernel's error line."""
    count = symbol_count(k, obj, func.old_name)
    if count is None:
        return 0
    sympos = func.sympos
    objname = obj.name if obj.is_module else "(null)"
    if count == 0:
        k.pr_err(f"symbol '{func.old_name}' not found in symbol table")
    elif count > 1 and sympos == 0:
        k.pr_err(f"unresolvable ambiguity for symbol '{func.old_name}' in object '{objname}'")
    elif sympos > 0 and sympos != min(count, sympos):
        k.pr_err(
            f"symbol position {sympos} for symbol '{func.old_name}' in object "
            f"'{obj.name if obj.is_module else 'vmlinux'}' not found"
        )
    else:
        return 0
    return -errno.EINVAL


def klp_init_object_loaded(k: Kernel, obj: KlpObject) -> int:
    """Write a module object's klp relocations (6.1 core.c:800-810), then resolve
    every func of the loaded object (first failure wins)."""
    if obj.is_module:
        ret = klp_apply_object_relocs(k, obj)
        if ret:
            return ret
    for func in obj.funcs:
        if func.nop:
            continue  # a nop copies an existing func, which resolved
        ret = klp_find_object_symbol(k, obj, func)
        if ret:
            return ret
    return 0
