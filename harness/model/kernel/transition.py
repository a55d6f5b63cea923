"""The consistency model (kernel/livepatch/transition.c).

A transition moves every task from the initial to the target patch state.  The model
tracks only the tasks that can block one: blocker works parked inside a function
(`Task`).  Every other task is assumed to switch at the first completion attempt (the
runner waits at least one kernel retry before it observes a step, so by then they
have).  A parked task switches when the stack check finds none of the transition
patch's affected functions on its stack, i.e. when the code it sleeps in is not the
code the transition is moving away from.
"""

from __future__ import annotations

from harness.model.kernel.callbacks import klp_post_patch_callback, klp_post_unpatch_callback
from harness.model.kernel.klp import KLP_PATCHED, KLP_UNDEFINED, KLP_UNPATCHED, KlpPatch, Task
from harness.model.kernel.patch import klp_unpatch_objects, stack_below
from harness.model.kernel.replace import (
    klp_discard_nops,
    klp_free_patch_async,
    klp_free_replaced_patches_async,
    klp_unpatch_replaced_patches,
)
from harness.model.kernel.system import Kernel
from harness.model.kernel.tasks import checked_while_running, switches_when_checked
from harness.model.variants import Variant


def _direction(k: Kernel) -> str:
    return "patching" if k.klp_target_state == KLP_PATCHED else "unpatching"


def klp_init_transition(k: Kernel, patch: KlpPatch, state: int) -> None:
    """Every task starts in the initial state; every func of the patch (nops and funcs
    of objects not loaded included) is marked in transition."""
    k.klp_transition_patch = patch
    k.klp_target_state = state
    k.pr_debug(f"'{patch.name}': initializing {_direction(k)} transition")
    for task in k.tasks:
        task.patch_state = int(not state)
    for obj in patch.objects:
        for func in obj.funcs:
            func.transition = True


def klp_start_transition(k: Kernel) -> None:
    """Mark every task not yet in the target state as pending."""
    patch = k.klp_transition_patch
    assert patch is not None
    k.pr_notice(f"'{patch.name}': starting {_direction(k)} transition")
    for task in k.tasks:
        if task.patch_state != k.klp_target_state:
            task.pending = True
    k.blocked_steps = 0
    k.signals_epoch, k.direct_failures = k.step_index, 0  # klp_signals_cnt = 0


def klp_check_stack(k: Kernel, task: Task) -> bool:
    """klp_check_stack() for a parked task: True if it may switch.

    It may not if it sleeps in an affected function of any func of the transition
    patch whose object is patched: in the PATCHED direction the code below the func on
    its stack (the previous patch's, or the original), in the UNPATCHED direction the
    func's own code (the original, for a nop)."""
    patch = k.klp_transition_patch
    assert patch is not None
    if switches_when_checked(task):
        return True
    for obj in patch.objects:
        if not obj.patched:
            continue
        for func in obj.funcs:
            if func.key != task.key:
                continue
            if k.klp_target_state == KLP_UNPATCHED or k.variant is Variant.STACK_CHECK_NEW_FUNC:
                checked: KlpPatch | bool | None = func.code
            else:
                checked = stack_below(k, func)
            if checked is not False and checked is task.code:
                return False
    return True


def klp_try_switch_task(k: Kernel, task: Task) -> bool:
    if task.patch_state == k.klp_target_state:
        return True
    if task.pinned and not checked_while_running(k, task):
        return False  # klp_check_and_switch_task(): -EBUSY, "is running"
    if task.unreliable and k.variant is not Variant.BPF_TRAMPOLINE_RELIABLE:
        return False  # klp_check_stack(): -EINVAL, "has an unreliable stack"
    if not klp_check_stack(k, task):
        return False
    task.pending = False
    task.patch_state = k.klp_target_state
    return True


def klp_try_complete_transition(k: Kernel) -> None:
    """One completion attempt: switch what can be switched; complete if all did,
    else leave the retry work scheduled (it reruns this about once a second)."""
    complete = True
    for task in k.tasks:
        if not klp_try_switch_task(k, task):
            complete = False
    if not complete:
        if not k.in_retry:  # klp_signals_cnt++ of an attempt made by a step itself
            k.direct_failures += 1
        k.retry_scheduled = True
        return
    k.completed_by_retry = k.in_retry
    k.retry_scheduled = False
    patch = k.klp_transition_patch
    assert patch is not None
    klp_complete_transition(k)
    if not patch.enabled:
        klp_free_patch_async(k, patch)
    elif patch.replace:
        klp_free_replaced_patches_async(k, patch)


def klp_complete_transition(k: Kernel) -> None:
    """Clean up after every task reached the target (also the cancel path)."""
    patch = k.klp_transition_patch
    assert patch is not None
    k.pr_debug(f"'{patch.name}': completing {_direction(k)} transition")
    if patch.replace and k.klp_target_state == KLP_PATCHED:
        klp_unpatch_replaced_patches(k, patch)
        klp_discard_nops(k, patch)
    if k.klp_target_state == KLP_UNPATCHED:
        klp_unpatch_objects(k, patch)
    for obj in patch.objects:
        for func in obj.funcs:
            func.transition = False
    for task in k.tasks:
        task.patch_state = KLP_UNDEFINED
        task.pending = False
    for obj in patch.objects:
        if not obj.loaded:
            continue
        if k.klp_target_state == KLP_PATCHED:
            klp_post_patch_callback(k, obj)
        elif k.klp_target_state == KLP_UNPATCHED:
            klp_post_unpatch_callback(k, obj)
    k.pr_notice(f"'{patch.name}': {_direction(k)} complete")
    k.klp_target_state = KLP_UNDEFINED
    k.klp_transition_patch = None


def klp_cancel_transition(k: Kernel) -> None:
    """Undo a patching transition that failed before it started (pre_patch or ftrace
    failure): complete it as an unpatching one."""
    patch = k.klp_transition_patch
    assert patch is not None and k.klp_target_state == KLP_PATCHED
    k.pr_debug(f"'{patch.name}': canceling patching transition, going to unpatch")
    k.klp_target_state = KLP_UNPATCHED
    klp_complete_transition(k)


def klp_reverse_transition(k: Kernel) -> None:
    """Turn the running transition around.  No completion attempt is made here: the
    retry work already scheduled completes it (about a second later)."""
    patch = k.klp_transition_patch
    assert patch is not None
    k.pr_debug(
        f"'{patch.name}': reversing transition from "
        + (
            "patching to unpatching"
            if k.klp_target_state == KLP_PATCHED
            else "unpatching to patching"
        )
    )
    patch.enabled = not patch.enabled
    k.klp_target_state = int(not k.klp_target_state)
    for task in k.tasks:
        task.pending = False
    klp_start_transition(k)
    k.retry_scheduled = True


def klp_force_transition(k: Kernel) -> None:
    """Switch every pending task now, consistency or not, and mark what can no longer
    be unloaded safely: the patch being removed, or the patches being replaced."""
    k.pr_warn("forcing remaining tasks to the patched state")
    for task in k.tasks:
        if task.pending:  # klp_update_patch_state()
            task.pending = False
            task.patch_state = k.klp_target_state
    patch = k.klp_transition_patch
    assert patch is not None
    if k.klp_target_state == KLP_UNPATCHED:
        patch.forced = True
    elif patch.replace:
        for other in k.klp_patches:
            if other is not patch:
                other.forced = True


def klp_transition_work_fn(k: Kernel) -> None:
    """The delayed retry work: one more completion attempt."""
    if k.retry_scheduled and k.klp_transition_patch is not None:
        k.in_retry = True
        klp_try_complete_transition(k)
        k.in_retry = False
