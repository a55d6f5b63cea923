"""Atomic replace and freeing patches (the parts of kernel/livepatch/core.c that
transition.c calls back into, declared in core.h).

A replace ("cumulative") patch gets a nop for every function an installed patch
patches and it does not, in a *dynamic* object when it has no object of that name.
When its patching transition completes, every older patch is unpatched silently and
freed, and its nops are popped and deleted: functions it does not patch itself run the
original again.  Freeing is asynchronous in the kernel (a work item drops the sysfs
directory and then the module reference); the model queues it and runs it when the
step settles.
"""

from __future__ import annotations

from harness.model.kernel.callbacks import klp_post_unpatch_callback
from harness.model.kernel.klp import KlpFunc, KlpObject, KlpPatch
from harness.model.kernel.patch import (
    klp_unpatch_func,
    klp_unpatch_objects,
    klp_unpatch_objects_dynamic,
)
from harness.model.kernel.system import Kernel
from harness.model.variants import Variant


def klp_find_object(patch: KlpPatch, old_obj: KlpObject) -> KlpObject | None:
    """The object of `patch` for the same vmlinux/module as `old_obj`."""
    for obj in patch.objects:
        if obj.name == old_obj.name:
            return obj
    return None


def klp_find_func(obj: KlpObject, old_func: KlpFunc) -> KlpFunc | None:
    """Same old_name and old_sympos, where 0 and 1 count as the same position (both
    name the first, or only, occurrence): "livepatch: Match old_sympos 0 and 1 in
    klp_find_func()" (<20251010230223.4013896-1-song@kernel.org>, v6.19), in every
    profile's source through the stable trees (6.1 core.c:86-104, 6.12 :87-105,
    7.3 :85-103).  Before it, a replace patch naming a function with sympos 1 that an
    older patch names with 0 got a nop for it too, and both made a `func,1` sysfs dir."""
    for func in obj.funcs:
        if func.old_name == old_func.old_name and _same_sympos(func.sympos, old_func.sympos):
            return func
    return None


def _same_sympos(a: int, b: int) -> bool:
    return a == b or {a, b} == {0, 1}


def klp_add_object_nops(patch: KlpPatch, old_obj: KlpObject) -> None:
    obj = klp_find_object(patch, old_obj)
    if obj is None:
        obj = KlpObject(name=old_obj.name, patch=patch, dynamic=True)  # no callbacks
        patch.objects.append(obj)
    for old_func in old_obj.funcs:
        if klp_find_func(obj, old_func) is None:
            obj.funcs.append(
                KlpFunc(old_name=old_func.old_name, obj=obj, nop=True, sympos=old_func.sympos)
            )


def klp_add_nops(k: Kernel, patch: KlpPatch) -> None:
    """Cover every object and func of every patch in klp_patches (list order)."""
    if k.variant is Variant.NO_NOPS:
        return
    for old_patch in k.klp_patches:
        for old_obj in old_patch.objects:
            klp_add_object_nops(patch, old_obj)


def klp_unpatch_replaced_patches(k: Kernel, new_patch: KlpPatch) -> None:
    """Every patch before `new_patch` is disabled and unpatched, without callbacks."""
    for old_patch in k.klp_patches:
        if old_patch is new_patch:
            return
        old_patch.enabled = False
        if k.variant is Variant.NO_NOPS:
            _unpatch_covered(k, old_patch, new_patch)
        else:
            klp_unpatch_objects(k, old_patch)
        if k.variant is Variant.REPLACED_UNPATCH_CALLBACKS:
            for old_obj in old_patch.objects:
                if old_obj.loaded:
                    klp_post_unpatch_callback(k, old_obj)


def _unpatch_covered(k: Kernel, old_patch: KlpPatch, new_patch: KlpPatch) -> None:
    """Variant.NO_NOPS: only the funcs the new patch patches leave their stacks; the
    others keep running the replaced patch's code."""
    for old_obj in old_patch.objects:
        new_obj = klp_find_object(new_patch, old_obj)
        for func in old_obj.funcs:
            if func.patched and new_obj is not None and klp_find_func(new_obj, func):
                klp_unpatch_func(k, func)


def klp_free_objects_dynamic(patch: KlpPatch) -> None:
    """Delete the nops and the dynamic objects (their sysfs dirs vanish)."""
    kept: list[KlpObject] = []
    for obj in patch.objects:
        obj.funcs = [func for func in obj.funcs if not func.nop]
        if not obj.dynamic:
            kept.append(obj)
    patch.objects = kept


def klp_discard_nops(k: Kernel, new_patch: KlpPatch) -> None:
    assert k.klp_transition_patch is not None
    klp_unpatch_objects_dynamic(k, k.klp_transition_patch)
    klp_free_objects_dynamic(k.klp_transition_patch)


def klp_free_patch_start(k: Kernel, patch: KlpPatch) -> None:
    """Under klp_mutex: out of klp_patches, object (and func) dirs removed."""
    if patch in k.klp_patches:
        k.klp_patches.remove(patch)
    patch.objects = []


def klp_free_patch_finish(k: Kernel, patch: KlpPatch) -> None:
    """Outside klp_mutex: the patch dir goes, then the module reference -- kept for
    ever by a forced patch, whose code tasks may still be running."""
    patch.kobj = False
    if not patch.forced:
        patch.mod.refcnt -= 1


def klp_free_patch_async(k: Kernel, patch: KlpPatch) -> None:
    klp_free_patch_start(k, patch)
    k.free_work.append(patch)


def klp_free_replaced_patches_async(k: Kernel, new_patch: KlpPatch) -> None:
    for old_patch in list(k.klp_patches):
        if old_patch is new_patch:
            return
        if k.variant is Variant.REPLACED_REENABLE:  # kept, sysfs and module reference too
            k.klp_patches.remove(old_patch)
            k.klp_replaced_patches.append(old_patch)
            continue
        klp_free_patch_async(k, old_patch)


def run_free_work(k: Kernel) -> None:
    """The queued klp_free_patch_work_fn() items."""
    while k.free_work:
        klp_free_patch_finish(k, k.free_work.pop(0))
