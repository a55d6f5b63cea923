"""Patch life cycle, sysfs writes and module hooks (kernel/livepatch/core.c).

`klp_enable_patch` runs from a livepatch module's init; `enabled_store`/`force_store`
are the sysfs writes; `klp_module_coming`/`klp_module_going` are called by the module
loader for every module.  Return values are the kernel's: 0 or a negative errno.
"""

from __future__ import annotations

import errno

from harness.model.kernel.callbacks import (
    klp_post_patch_callback,
    klp_post_unpatch_callback,
    klp_pre_patch_callback,
    klp_pre_unpatch_callback,
)
from harness.model.kernel.klp import (
    KLP_PATCHED,
    KLP_UNPATCHED,
    KlpFunc,
    KlpObject,
    KlpPatch,
    Module,
)
from harness.model.kernel.patch import klp_patch_object, klp_unpatch_object
from harness.model.kernel.relocs import klp_clear_object_relocs
from harness.model.kernel.replace import klp_add_nops, klp_free_patch_finish, klp_free_patch_start
from harness.model.kernel.state import klp_is_patch_compatible
from harness.model.kernel.symbols import klp_init_object_loaded
from harness.model.kernel.system import Kernel
from harness.model.kernel.transition import (
    klp_cancel_transition,
    klp_force_transition,
    klp_init_transition,
    klp_reverse_transition,
    klp_start_transition,
    klp_try_complete_transition,
)
from harness.model.variants import Variant
from harness.scenario.types import PatchModule


def klp_patch_of_module(mod: Module, replace: bool) -> KlpPatch:
    """The static `struct klp_patch` of a generated livepatch module, as its init
    passes it to klp_enable_patch() (klp_init_patch_early)."""
    desc = mod.desc
    assert isinstance(desc, PatchModule)
    patch = KlpPatch(mod=mod, replace=replace, states=desc.states)
    for pobj in desc.objects:
        obj = KlpObject(
            name=pobj.name, patch=patch, callbacks=pobj.callbacks, klp_relocs=pobj.klp_relocs
        )
        obj.funcs = [
            KlpFunc(old_name=name, obj=obj, sympos=pobj.spec(name).sympos) for name in pobj.funcs
        ]
        patch.objects.append(obj)
    return patch


# ---- sysfs -----------------------------------------------------------------------------


def enabled_store(k: Kernel, patch: KlpPatch, enabled: bool) -> int:
    """echo 0|1 > /sys/kernel/livepatch/<patch>/enabled"""
    if patch.enabled == enabled:
        return -errno.EINVAL  # already in the requested state
    if patch is k.klp_transition_patch:
        klp_reverse_transition(k)
        return 0
    if not enabled:
        if k.variant is Variant.DISABLE_TOP_ONLY and not _on_top(k, patch):
            return -errno.EBUSY
        return __klp_disable_patch(k, patch)
    if k.variant is Variant.REPLACED_REENABLE and patch in k.klp_replaced_patches:
        return _reenable_replaced(k, patch)
    return -errno.EINVAL  # a disabled patch cannot be re-enabled


def _on_top(k: Kernel, patch: KlpPatch) -> bool:
    """Variant.DISABLE_TOP_ONLY: `patch` is the top of every func stack it is on."""
    return all(
        k.klp_ops[func.key][-1] is func
        for obj in patch.objects
        for func in obj.funcs
        if func.patched
    )


def _reenable_replaced(k: Kernel, patch: KlpPatch) -> int:
    """Variant.REPLACED_REENABLE: a replaced patch goes back on klp_patches, on top."""
    if k.klp_transition_patch is not None:
        return -errno.EBUSY
    k.klp_replaced_patches.remove(patch)
    for obj in patch.objects:
        klp_init_object(k, patch, obj)
    k.klp_patches.append(patch)
    ret = __klp_enable_patch(k, patch)
    if ret:
        k.klp_patches.remove(patch)
        k.klp_replaced_patches.append(patch)
    return ret


def force_store(k: Kernel, patch: KlpPatch, value: bool) -> int:
    """echo 1 > /sys/kernel/livepatch/<patch>/force (writing 0 does nothing)."""
    if not value:
        return 0
    if patch is not k.klp_transition_patch:
        return -errno.EINVAL
    klp_force_transition(k)
    return 0


# ---- enable and disable -----------------------------------------------------------------


def klp_init_object(k: Kernel, patch: KlpPatch, obj: KlpObject) -> int:
    """Create the object dir; find its module (klp_find_object_module: only a module
    that passed the coming hook counts); a loaded object's funcs are resolved now
    (6.1 core.c:868-869), which fails with -EINVAL for a symbol it lacks."""
    obj.patched = False
    obj.mod = None
    if obj.is_module:
        mod = k.modules.get(obj.name)
        if mod is not None and mod.klp_alive:
            obj.mod = mod
    for func in obj.funcs:
        func.patched = False
        func.transition = False
    if obj.loaded:
        return klp_init_object_loaded(k, obj)
    return 0


def klp_init_patch(k: Kernel, patch: KlpPatch) -> int:
    """On failure the patch is not on klp_patches (6.1 core.c:938-946)."""
    patch.kobj = True
    if patch.replace:
        klp_add_nops(k, patch)
    for obj in patch.objects:
        ret = klp_init_object(k, patch, obj)
        if ret:
            return ret
    k.klp_patches.append(patch)
    return 0


def __klp_enable_patch(k: Kernel, patch: KlpPatch) -> int:
    if k.klp_transition_patch is not None:
        return -errno.EBUSY
    k.pr_notice(f"enabling patch '{patch.name}'")
    klp_init_transition(k, patch, KLP_PATCHED)
    for obj in patch.objects:
        if not obj.loaded:
            continue
        ret = klp_pre_patch_callback(k, obj)
        if ret:
            k.pr_warn(f"pre-patch callback failed for object '{obj.name}'")
            break
        ret = klp_patch_object(k, obj)
        if ret:
            k.pr_warn(f"failed to patch object '{obj.name}'")
            break
    else:
        if k.variant is Variant.REPLACED_UNPATCH_CALLBACKS and patch.replace:
            _replaced_pre_unpatch(k, patch)
        klp_start_transition(k)
        patch.enabled = True
        klp_try_complete_transition(k)
        return 0
    k.pr_warn(f"failed to enable patch '{patch.name}'")
    klp_cancel_transition(k)
    return ret


def _replaced_pre_unpatch(k: Kernel, patch: KlpPatch) -> None:
    """Variant.REPLACED_UNPATCH_CALLBACKS: after the new patch's pre_patch callbacks,
    the pre_unpatch callbacks of the enabled patches it replaces, newest first (seed
    000's klp_run_pre_unpatch_callbacks_when_replacing)."""
    for old_patch in reversed(k.klp_patches):
        if old_patch is patch or not old_patch.enabled:
            continue
        for old_obj in old_patch.objects:
            if old_obj.loaded:
                klp_pre_unpatch_callback(k, old_obj)


def klp_enable_patch(k: Kernel, patch: KlpPatch) -> int:
    """Called from a livepatch module's init."""
    if not klp_is_patch_compatible(k, patch):
        k.pr_err(
            f"Livepatch patch ({patch.name}) is not compatible with the already "
            "installed livepatches."
        )
        return -errno.EINVAL
    patch.mod.refcnt += 1  # try_module_get(patch->mod)
    ret = klp_init_patch(k, patch)
    if not ret:
        ret = __klp_enable_patch(k, patch)
    if ret:
        klp_free_patch_start(k, patch)
        klp_free_patch_finish(k, patch)
    return ret


def __klp_disable_patch(k: Kernel, patch: KlpPatch) -> int:
    if k.klp_transition_patch is not None:
        return -errno.EBUSY
    klp_init_transition(k, patch, KLP_UNPATCHED)
    objects = patch.objects
    if k.variant is Variant.DISABLE_CALLBACKS_REVERSED:
        objects = objects[::-1]
    for obj in objects:
        if obj.patched:
            klp_pre_unpatch_callback(k, obj)
    klp_start_transition(k)
    patch.enabled = False
    klp_try_complete_transition(k)
    return 0


# ---- module hooks ----------------------------------------------------------------------


def _module_object(patch: KlpPatch, mod: Module) -> KlpObject | None:
    """The first object of `patch` named after `mod` (static or dynamic)."""
    for obj in patch.objects:
        if obj.is_module and obj.name == mod.name:
            return obj
    return None


def klp_cleanup_module_patches_limited(k: Kernel, mod: Module, limit: KlpPatch | None) -> None:
    """Revert every patch (before `limit`, in list order) from a module that goes."""
    for patch in k.klp_patches:
        if patch is limit:
            break
        obj = _module_object(patch, mod)
        if obj is None:
            continue
        if patch is not k.klp_transition_patch:
            klp_pre_unpatch_callback(k, obj)
        k.pr_notice(f"reverting patch '{patch.name}' on unloading module '{mod.name}'")
        klp_unpatch_object(k, obj)
        klp_post_unpatch_callback(k, obj)
        klp_clear_object_relocs(k, obj)
        obj.mod = None  # klp_free_object_loaded()


def klp_module_coming(k: Kernel, mod: Module) -> int:
    """Apply every patch in the list to a module that is loading (before its init).

    Not the transition patch: pre_patch and post_patch now.  The transition patch:
    pre_patch now, post_patch (or post_unpatch) when its transition completes."""
    mod.klp_alive = True
    for patch in k.klp_patches:
        obj = _module_object(patch, mod)
        if obj is None:
            continue
        obj.mod = mod
        ret = klp_init_object_loaded(k, obj)
        if ret:
            k.pr_warn(f"failed to initialize patch '{patch.name}' for module '{mod.name}' ({ret})")
            break
        k.pr_notice(f"applying patch '{patch.name}' to loading module '{mod.name}'")
        ret = klp_pre_patch_callback(k, obj)
        if ret:
            k.pr_warn(f"pre-patch callback failed for object '{obj.name}'")
            break
        ret = klp_patch_object(k, obj)
        if ret:
            k.pr_warn(f"failed to apply patch '{patch.name}' to module '{mod.name}' ({ret})")
            klp_post_unpatch_callback(k, obj)
            break
        if patch is not k.klp_transition_patch:
            klp_post_patch_callback(k, obj)
    else:
        return 0
    k.pr_warn(
        f"patch '{patch.name}' failed for module '{mod.name}', refusing to load module '{mod.name}'"
    )
    mod.klp_alive = False
    if not k.profile.failed_coming_keeps_relocs:  # a kernel without finding 6
        klp_clear_object_relocs(k, obj)
    obj.mod = None
    klp_cleanup_module_patches_limited(k, mod, patch)
    return ret


def klp_module_going(k: Kernel, mod: Module) -> None:
    """Revert every patch from a module being removed (after its exit ran)."""
    mod.klp_alive = False
    klp_cleanup_module_patches_limited(k, mod, None)
