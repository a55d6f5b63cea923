"""Shadow fields: a patch adding a field to a target's existing structure through the
shadow variable API, as samples/livepatch/livepatch-shadow-fix1.c adds `leak` to
`struct dummy` (kernel/livepatch/shadow.c; the generated code is in
kmod_templates/fields.c.j2).

A patch object with `shadow_field = ID` attaches, in its post_patch callback, a
shadow variable <entry, ID> to the target's `struct klp_harness_func` entry of each
function it patches (found through the target's kallsyms: `klp_harness_funcs`, entry
i for the target's i-th func), recording its own module name in it; a variable that
already exists is taken over (`taken over from <owner>`), which is how a cumulative
replacement keeps its predecessor's fields: a replaced patch runs no unpatch
callback (transition.c:klp_complete_transition -> klp_unpatch_replaced_patches), so
nothing frees them in between.  The object's post_unpatch frees them (after a
disable, or at the target's going hook), naming who attached each.

The callbacks run when the core runs post_patch and post_unpatch
(model/callbacks.py: klp_post_patch_callback, klp_post_unpatch_callback, whose
conditions are core.h's), after the object's own callback lines.
"""

from __future__ import annotations

from harness.errors import ScenarioError
from harness.model.kernel.klp import KlpObject
from harness.model.kernel.shadow import NULL, Pointer
from harness.model.kernel.system import Kernel
from harness.model.variants import Variant
from harness.scenario.types import PatchModule, TargetModule


def _field(obj: KlpObject) -> tuple[int, tuple[str, ...]] | None:
    """(shadow id, funcs) of the patch object behind `obj`, if it adds a field."""
    desc = obj.patch.mod.desc
    if not isinstance(desc, PatchModule) or obj.mod is None:
        return None
    for pobj in desc.objects:
        if pobj.name == obj.name and pobj.shadow_field is not None:
            return pobj.shadow_field, pobj.funcs
    return None


def _entry(obj: KlpObject, func: str) -> Pointer:
    """The target's `klp_harness_funcs[i]` of its current instance."""
    assert obj.mod is not None
    target = obj.mod.desc
    assert isinstance(target, TargetModule)
    return ("entry", obj.mod.instance, target.funcs.index(func))


def attach_fields(k: Kernel, obj: KlpObject) -> None:
    """post_patch: klp_shadow_get(), else klp_shadow_alloc() with the owner's name."""
    field = _field(obj)
    if field is None:
        return
    ident, funcs = field
    patch = obj.patch.name
    for func in funcs:
        entry = _entry(obj, func)
        _refuse_stale(k, ident)
        var = k.shadow.klp_shadow_get(entry, ident)
        if (
            var is not None
            and obj.patch.replace
            and k.variant is Variant.SHADOW_FIELD_NOT_HANDED_OVER
        ):
            k.shadow.klp_shadow_free(entry, ident)  # as if the replaced patch freed it
            var = None
        if var is not None:
            k.pr_info(
                patch, f"{obj.name}:{func}: shadow field {ident:#x} taken over from {var.owner}"
            )
            continue
        var = k.shadow.klp_shadow_alloc(entry, ident, NULL)
        var.owner = patch
        k.pr_info(patch, f"{obj.name}:{func}: shadow field {ident:#x} attached")


def free_fields(k: Kernel, obj: KlpObject) -> None:
    """post_unpatch: klp_shadow_free() of each field, saying who attached it."""
    field = _field(obj)
    if field is None:
        return
    ident, funcs = field
    patch = obj.patch.name
    for func in funcs:
        var = k.shadow.klp_shadow_free(_entry(obj, func), ident)
        if var is None:
            k.pr_info(patch, f"{obj.name}:{func}: shadow field {ident:#x} missing")
        else:
            k.pr_info(
                patch, f"{obj.name}:{func}: shadow field {ident:#x} freed (attached by {var.owner})"
            )


def _refuse_stale(k: Kernel, ident: int) -> None:
    """A field left on an earlier instance of the target (its patch replaced by one
    without the field, then the target unloaded) is keyed by a freed address the
    reloaded target may reuse: whether klp_shadow_get() finds it is up to the
    allocator."""
    live = _live_instances(k)
    for var in k.shadow.vars.values():
        if var.id == ident and var.obj[0] == "entry" and var.obj[1] not in live:
            raise ScenarioError(
                "steps",
                f"shadow field {ident:#x} of an unloaded target instance is still "
                "attached (no patch freed it): a reloaded target may reuse its address",
                str(k.scenario.path),
            )


def _live_instances(k: Kernel) -> set[int]:
    return {mod.instance for mod in k.modules.values()}
