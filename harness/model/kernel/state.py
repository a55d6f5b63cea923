"""System states of cumulative patches (kernel/livepatch/state.c).

A patch's `klp_state`s are (id, version) records.  They never change what code runs;
they decide whether a new patch may be enabled at all (`klp_is_patch_compatible`) and
let callbacks find the state of the patch they take over (`klp_get_prev_state`).
"""

from __future__ import annotations

from harness.model.kernel.klp import KlpPatch
from harness.model.kernel.system import Kernel
from harness.scenario.types import KlpState


def klp_get_state(patch: KlpPatch, id: int) -> KlpState | None:
    for state in patch.states:
        if state.id == id:
            return state
    return None


def klp_get_prev_state(k: Kernel, id: int) -> KlpState | None:
    """The state `id` of the latest patch before the transition patch in klp_patches.

    Only meaningful during a transition (the kernel WARNs and returns NULL otherwise);
    replaced patches are still in the list when the replacing patch's post_patch runs,
    so they are seen then."""
    patch = klp_get_prev_state_patch(k, id)
    return None if patch is None else klp_get_state(patch, id)


def klp_get_prev_state_patch(k: Kernel, id: int) -> KlpPatch | None:
    """klp_get_prev_state() (6.1 state.c:64-83), returning the patch whose `states[]`
    entry the kernel returns: a module that reads `prev_state->data` reads that
    patch's memory.  Every patch it can return is on klp_patches, so its module is
    loaded and pinned (core.c:1074 try_module_get) and its vmlinux post_unpatch has not
    run (a patch leaves the list right after it: transition.c:453, core.c:727)."""
    if k.klp_transition_patch is None:
        return None  # WARN_ON_ONCE(!klp_transition_patch)
    last: KlpPatch | None = None
    for patch in k.klp_patches:
        if patch is k.klp_transition_patch:
            break
        if klp_get_state(patch, id) is not None:
            last = patch
    return last


def klp_is_state_compatible(patch: KlpPatch, old_state: KlpState) -> bool:
    """A cumulative (replace) patch must carry every installed state; any patch that
    carries one must not downgrade its version."""
    state = klp_get_state(patch, old_state.id)
    if state is None:
        return not patch.replace
    return state.version >= old_state.version


def klp_is_patch_compatible(k: Kernel, patch: KlpPatch) -> bool:
    """Checked against every patch in klp_patches, the one in transition included."""
    return all(
        klp_is_state_compatible(patch, old_state)
        for old_patch in k.klp_patches
        for old_state in old_patch.states
    )
