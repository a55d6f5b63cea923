"""Model variants: designs the kernel did not take, and slips a reader of the source
could make, each one switch in the model (`StepModel(..., variant=...)`).

They exist to be refuted: `klp-harness fuzz --model-variant NAME` predicts with the
variant and compares with the real kernel, and a short history on which the kernel
disagrees is the proof that the differential tester finds what a wrong model gets
wrong (docs/fuzz.md).  The default model uses none of them.

Each switch is read where the kernel function it changes is modelled, as
`k.variant is Variant.X`, so a variant is the model plus one visible difference:

| variant | where |
|---|---|
| replaced-unpatch-callbacks | core.__klp_enable_patch, replace.klp_unpatch_replaced_patches |
| replaced-reenable | core.enabled_store, replace.klp_free_replaced_patches_async |
| disable-top-only | core.enabled_store |
| no-nops | replace.klp_add_nops, replace.klp_unpatch_replaced_patches |
| disable-callbacks-reversed | core.__klp_disable_patch |
| static-patched-cleared | patch.__klp_unpatch_object |
| stack-check-new-func | transition.klp_check_stack |
| fork-initial-state | tasks._forked_state |
| kprobe-post-handler-shares | ftrace.register_kprobe, ftrace.livepatch_ipmodify_conflict |
| bpf-trampoline-reliable | transition.klp_try_switch_task |
| shadow-field-not-handed-over | fields.attach_fields |
| klp-relocs-kept, klp-relocs-cleared | relocs.klp_clear_object_relocs |
"""

from __future__ import annotations

from enum import StrEnum

from harness.errors import UsageError


class Variant(StrEnum):
    # Designs debated on the list (the threads under shared/seeds/):
    # a replace also runs the replaced patches' pre_unpatch (when it starts) and
    # post_unpatch (when it completes) callbacks -- proposed in "introduce atomic
    # replace" v5 (seed 000); 6.1 runs only the new patch's callbacks.
    REPLACED_UNPATCH_CALLBACKS = "replaced-unpatch-callbacks"
    # replaced patches move to a list of their own, keep their sysfs directory and
    # module reference, and can be enabled again (v10's klp_replaced_patches, seed 003);
    # 6.1 frees them.
    REPLACED_REENABLE = "replaced-reenable"
    # only a patch on top of every func stack it is on may be disabled (the stacking
    # rule questioned in seed 003); 6.1 disables any patch.
    DISABLE_TOP_ONLY = "disable-top-only"
    # a cumulative patch gets no nops and leaves the functions it does not patch as
    # the replaced patches had them (the problem of seed 004); 6.1 reverts them.
    NO_NOPS = "no-nops"
    # Single-line slips:
    # pre_unpatch callbacks of a disabled patch in reverse object order
    DISABLE_CALLBACKS_REVERSED = "disable-callbacks-reversed"
    # discarding nops clears `patched` on the static objects instead of the dynamic ones
    STATIC_PATCHED_CLEARED = "static-patched-cleared"
    # the patching stack check looks for the new func's code, not the code below it
    STACK_CHECK_NEW_FUNC = "stack-check-new-func"
    # Mis-readings of the areas around livepatch (one per area the palette draws):
    # a task forked during a transition starts in the initial state (klp_copy_process
    # read as resetting, not copying, the parent's patch_state)
    FORK_INITIAL_STATE = "fork-initial-state"
    # a kprobe with a post_handler shares the call site with livepatch (IPMODIFY taken
    # for a flag of livepatch's only; ftrace refuses the second IPMODIFY user)
    KPROBE_POST_HANDLER_SHARES = "kprobe-post-handler-shares"
    # a task asleep under a BPF trampoline has a reliable stack (the trampoline's frame
    # taken for one the ORC unwinder knows, as 7.3's does; 6.1 and 6.12 do not)
    BPF_TRAMPOLINE_RELIABLE = "bpf-trampoline-reliable"
    # a cumulative patch does not find the shadow field of the patch it replaces (as
    # if the replaced patch had freed it): it attaches a new one
    SHADOW_FIELD_NOT_HANDED_OVER = "shadow-field-not-handed-over"
    # klp relocations are not cleared when their object goes, on every kernel (6.1's
    # behaviour taken for all: v6.3's klp_clear_object_relocs overlooked)
    KLP_RELOCS_KEPT = "klp-relocs-kept"
    # klp relocations are cleared when their object goes, on every kernel (v6.3's fix
    # taken for one 6.1 has)
    KLP_RELOCS_CLEARED = "klp-relocs-cleared"


DESIGNS = (
    Variant.REPLACED_UNPATCH_CALLBACKS,
    Variant.REPLACED_REENABLE,
    Variant.DISABLE_TOP_ONLY,
    Variant.NO_NOPS,
)
SLIPS = (
    Variant.DISABLE_CALLBACKS_REVERSED,
    Variant.STATIC_PATCHED_CLEARED,
    Variant.STACK_CHECK_NEW_FUNC,
)
AREAS = (
    Variant.FORK_INITIAL_STATE,
    Variant.KPROBE_POST_HANDLER_SHARES,
    Variant.BPF_TRAMPOLINE_RELIABLE,
    Variant.SHADOW_FIELD_NOT_HANDED_OVER,
    Variant.KLP_RELOCS_KEPT,
    Variant.KLP_RELOCS_CLEARED,
)

DESCRIPTIONS: dict[Variant, str] = {
    Variant.REPLACED_UNPATCH_CALLBACKS: "a replace runs the replaced patches' pre/post_unpatch "
    "callbacks (seed 000)",
    Variant.REPLACED_REENABLE: "replaced patches stay and can be enabled again (seed 003, v10)",
    Variant.DISABLE_TOP_ONLY: "only the top patch of a func stack may be disabled (seed 003)",
    Variant.NO_NOPS: "a cumulative patch leaves functions it does not patch as they were "
    "(seed 004)",
    Variant.DISABLE_CALLBACKS_REVERSED: "slip: pre_unpatch callbacks in reverse object order "
    "on disable",
    Variant.STATIC_PATCHED_CLEARED: "slip: discarding nops clears `patched` on static objects, "
    "not dynamic ones",
    Variant.STACK_CHECK_NEW_FUNC: "slip: the patching stack check looks for the new function",
    Variant.FORK_INITIAL_STATE: "a task forked during a transition starts in the initial state",
    Variant.KPROBE_POST_HANDLER_SHARES: "a kprobe with a post_handler does not conflict with "
    "livepatch",
    Variant.BPF_TRAMPOLINE_RELIABLE: "a task asleep under a BPF trampoline has a reliable stack",
    Variant.SHADOW_FIELD_NOT_HANDED_OVER: "a cumulative patch does not take over the replaced "
    "patch's shadow field",
    Variant.KLP_RELOCS_KEPT: "klp relocations are not cleared when their object goes (any kernel)",
    Variant.KLP_RELOCS_CLEARED: "klp relocations are cleared when their object goes (any kernel)",
}


def parse_variant(name: str | None) -> Variant | None:
    """`--model-variant NAME` -> Variant (None: the model itself)."""
    if not name:
        return None
    try:
        return Variant(name)
    except ValueError:
        known = ", ".join(v.value for v in Variant)
        raise UsageError(f"unknown model variant {name!r} (known: {known})") from None
