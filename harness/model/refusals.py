"""What the model refuses to predict, step by step: each function returns why (the
text that follows the step's own in the ScenarioError StepModel raises), or None.

A refusal is the model saying the kernel is undefined, non-deterministic or would be
hurt there, with the source line it rests on; docs/model-notes.md lists them all.
Refusals of other modules (tasks.pinned_refusal, bpf.step_refusal) are plain reasons
that `prefixed` joins the same way."""

from __future__ import annotations

from harness.model.kernel.klp import KLP_PATCHED
from harness.model.kernel.system import Kernel
from harness.model.kernel.tasks import (
    checked_while_running,
    rcu_tasks_holdouts,
    spinner_refusal,
    spinner_started,
)
from harness.model.kernel.transition import klp_check_stack
from harness.scenario.step_types import Disable, Enable, Load, Step, Unload, Wait


def prefixed(why: str | None) -> str | None:
    return None if why is None else f": {why}"


def unload(k: Kernel, step: Step) -> str | None:
    """Unloading a patch module whose code a parked task still runs.

    A forced transition leaves tasks where they are, and the kernel pins only the
    modules of the patches force marks (6.1 transition.c:657-664: the disabled one,
    or those a replace patch replaces).  A task forced past a non-replace enable
    still sleeps in the previous patch's function; a later replace patch checks only
    the top of each func stack (transition.c:209-227, klp_check_stack_func), completes,
    and drops that patch's module reference unforced (core.c:708-709).  rmmod then frees
    the code the task returns into: an Oops in the kworker (seen on 6.1)."""
    if not isinstance(step, Unload):
        return None
    mod = k.modules.get(step.module)
    if mod is None or mod.patch is None or mod.refcnt:
        return None
    for task in k.tasks:
        if task.code is mod.patch:
            return (
                f" would free code that {task.target}'s parked work still runs "
                f"({task.key[0]}:{task.key[1]}, left there by a forced transition): the "
                "kernel Oopses; release it first"
            )
    return None


def spinner(k: Kernel, step: Step) -> str | None:
    """Starting a spinner the guest could not survive (tasks.spinner_refusal)."""
    started = spinner_started(k.scenario, step)
    if started is None:
        return None
    return prefixed(spinner_refusal(k.profile, started, k.scenario.cpus))


def holdouts(k: Kernel, where: str) -> str | None:
    """A step that waits in synchronize_rcu_tasks() (`where`, e.g. removing an ftrace
    handler: ftrace_shutdown()) while a spinner runs waits until it stops
    (tasks.rcu_tasks_holdouts)."""
    names = rcu_tasks_holdouts(k)
    if not names:
        return None
    return (
        f" {where} waits for ever for {', '.join(names)}, which never schedules "
        "voluntarily (stop it first, or give it rcu_tasks_qs = true)"
    )


def reversal(k: Kernel, step: Step) -> str | None:
    """Reversing the disable of the bottom patch of a shared func stack.

    The reversed transition targets PATCHED, so klp_check_stack_func() checks the
    code *below* each func: list_is_singular() is false, and list_next_entry() of
    the bottom func is the list head inside struct klp_ops, read as a klp_func
    (6.1 transition.c:216-226, 6.12 :235-243, 7.3 :226-234): a bogus address range,
    so whether a task may switch is undefined."""
    patch = k.klp_transition_patch
    if not isinstance(step, Enable) or patch is None or patch.name != step.patch:
        return None
    if k.klp_target_state != KLP_PATCHED:
        return None
    for obj in patch.objects:
        for func in obj.funcs:
            stack = k.klp_ops.get(func.key, [])
            if func.patched and len(stack) > 1 and stack[0] is func:
                return (
                    f" reverses the disable of {patch.name}, the bottom of "
                    f"{func.key[0]}:{func.key[1]}'s func stack: the kernel's stack check "
                    "then reads the list head as a klp_func (transition.c:224 on 6.1), "
                    "undefined"
                )
    return None


def blocked(k: Kernel, step: Step) -> str | None:
    """A wait that can never end (a `wait --retries` ends).  Counts the steps a
    transition stays blocked (Kernel.blocked_steps)."""
    patch = k.klp_transition_patch
    if patch is None:
        return None
    k.blocked_steps += 1
    waits = (
        (isinstance(step, Load) and not step.nowait and step.module == patch.name)
        or (isinstance(step, Disable) and not step.nowait and step.patch == patch.name)
        or (isinstance(step, Wait) and step.patch == patch.name and step.retries is None)
    )
    if not waits:
        return None
    hint = "" if isinstance(step, Wait) else " (add --nowait to go on without it)"
    return (
        f" would wait for ever: '{patch.name}' stays in transition, blocked by {blockers(k)}{hint}"
    )


def blockers(k: Kernel) -> str:
    """The tasks that keep the current transition from completing."""
    names = []
    for task in k.tasks:
        if task.patch_state == k.klp_target_state:
            continue
        if task.pinned and not checked_while_running(k, task):
            names.append(f"{task.target}'s spinner running on its own CPU")
        elif task.unreliable:
            names.append(f"a {task.target} process asleep under a BPF trampoline")
        elif not klp_check_stack(k, task):
            impl = task.code.name if task.code is not None else "orig"
            what = "spinner spinning" if task.spinner else "work parked"
            names.append(f"{task.target}'s {what} in {task.key[0]}:{task.key[1]} ({impl})")
    return ", ".join(names) or "nothing (model error)"
