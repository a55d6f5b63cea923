"""System states of cumulative patches (kernel/livepatch/state.c).

A patch's `klp_state`s are (id, version) records.  They never change what code runs;
they decide whether a new patch may be enabled at all (`klp_is_patch_compatible`) and
let callbacks find the state of the patch they take over (`klp_get_prev_state`).
"""

from __future__ import annotations

from harness.model.klp import KlpPatch
from harness.model.system import Kernel
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
    if k.klp_transition_patch is None:
        return None
    last: KlpState | None = None
    for patch in k.klp_patches:
        if patch is k.klp_transition_patch:
            break
        state = klp_get_state(patch, id)
        if state is not None:
            last = state
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
