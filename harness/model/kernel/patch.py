"""Func stacks and the ftrace handler (kernel/livepatch/patch.c).

Every patched function has one `struct klp_ops` whose `func_stack` holds the klp_funcs
of every patch that patches it, most recently pushed on top.  The ftrace handler looks
only at the top entry (and, for a task not yet switched, the one below it): that single
decision is what "which implementation runs" means everywhere in the model.
"""

from __future__ import annotations

import errno

from harness.model.kernel.ftrace import ftrace_call, livepatch_ipmodify_conflict
from harness.model.kernel.klp import (
    KLP_UNDEFINED,
    KLP_UNPATCHED,
    ORIG,
    FuncKey,
    KlpFunc,
    KlpObject,
    KlpPatch,
)
from harness.model.kernel.system import FTRACE_SHUTDOWN, Kernel
from harness.model.variants import Variant
from harness.scenario.step_types import Trigger
from harness.scenario.types import VMLINUX


def klp_ftrace_handler(k: Kernel, key: FuncKey, patch_state: int) -> KlpPatch | None:
    """Whose code a call of `key` runs for a task in `patch_state`; None = original.

    Mirrors klp_ftrace_handler(): top of the stack, or the entry below it when the top
    is in transition and the task is still unpatched; a nop means the original."""
    stack = k.klp_ops.get(key)
    if not stack:
        return None  # no ftrace handler registered: the original runs
    func = stack[-1]
    if func.transition and patch_state == KLP_UNPATCHED:
        if len(stack) == 1:
            return None
        func = stack[-2]
    return func.code


def klp_patch_func(k: Kernel, func: KlpFunc) -> int:
    """Push `func` on its func stack; the first func of a function registers the ftrace
    handler, which fails with -EBUSY while kernel.ftrace_enabled=0 (the ops are
    FTRACE_OPS_FL_PERMANENT: __register_ftrace_function refuses them) or while a
    kprobe with a post_handler owns the call site's IPMODIFY (model/ftrace.py)."""
    stack = k.klp_ops.get(func.key)
    if stack is None:
        if not k.ftrace_enabled or livepatch_ipmodify_conflict(k, func.key):
            k.pr_err(
                f"failed to register ftrace handler for function '{func.old_name}' ({-errno.EBUSY})"
            )
            return -errno.EBUSY
        stack = k.klp_ops[func.key] = []
        if any((VMLINUX, p.func) == func.key for p in k.bpf):
            # register_ftrace_function() -> prepare_direct_functions_for_ipmodify():
            # FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_PEER to the trampoline there (6.1
            # kernel/trace/ftrace.c:8205-8239, :8345; model/kernel/bpf.py)
            k.bpf_shares_ipmodify.add(func.key)
    stack.append(func)
    func.patched = True
    return 0


def klp_unpatch_func(k: Kernel, func: KlpFunc) -> None:
    """Remove `func` from its stack (wherever it is); the last one unregisters the
    handler (the stack disappears)."""
    stack = k.klp_ops[func.key]
    stack.remove(func)
    if not stack:
        del k.klp_ops[func.key]
        k.rcu_tasks_waits.append(FTRACE_SHUTDOWN)  # unregister_ftrace_function(&ops->fops)
        # cleanup_direct_functions_after_ipmodify(): ..._DISABLE_SHARE_IPMODIFY_PEER
        # (6.1 ftrace.c:8254-8286, :8371)
        k.bpf_shares_ipmodify.discard(func.key)
    func.patched = False


def klp_patch_object(k: Kernel, obj: KlpObject) -> int:
    """Push every func of `obj`; on failure pop the ones already pushed."""
    for func in obj.funcs:
        ret = klp_patch_func(k, func)
        if ret:
            klp_unpatch_object(k, obj)
            return ret
    obj.patched = True
    return 0


def __klp_unpatch_object(k: Kernel, obj: KlpObject, nops_only: bool) -> None:
    for func in obj.funcs:
        if nops_only and not func.nop:
            continue
        if func.patched:
            klp_unpatch_func(k, func)
    dynamic = obj.dynamic
    if k.variant is Variant.STATIC_PATCHED_CLEARED:
        dynamic = not dynamic
    if dynamic or not nops_only:
        obj.patched = False


def klp_unpatch_object(k: Kernel, obj: KlpObject) -> None:
    __klp_unpatch_object(k, obj, nops_only=False)


def klp_unpatch_objects(k: Kernel, patch: KlpPatch) -> None:
    for obj in patch.objects:
        if obj.patched:
            __klp_unpatch_object(k, obj, nops_only=False)


def klp_unpatch_objects_dynamic(k: Kernel, patch: KlpPatch) -> None:
    """Pop the nops (of static and dynamic objects) of a replace patch."""
    for obj in patch.objects:
        if obj.patched:
            __klp_unpatch_object(k, obj, nops_only=True)


def stack_below(k: Kernel, func: KlpFunc) -> KlpPatch | bool | None:
    """The code a PATCHED-direction stack check looks for (klp_check_stack_func): the
    original if `func` is alone on its stack, else the entry just below it.

    Returns False when `func` is the bottom of a stack that holds more entries: the
    kernel then takes list_next_entry() of the last node, i.e. the list head, and reads
    a bogus address range that no task sleeps in (see docs/model-notes.md)."""
    stack = k.klp_ops[func.key]
    if len(stack) == 1:
        return None
    index = stack.index(func)
    if index == 0:
        return False
    return stack[index - 1].code


def impl_now(k: Kernel, key: FuncKey) -> str:
    """Who runs a call of `key` by a task started now (docs/model-notes.md "Who calls")."""
    state = k.klp_target_state if k.klp_transition_patch is not None else KLP_UNDEFINED
    code = klp_ftrace_handler(k, key, state)
    return code.name if code is not None else ORIG


def after_step(k: Kernel, step: object, impls: dict[str, str]) -> None:
    """The calls a step made besides its action's own: a trigger's command calls the
    functions it watches, and the runner reads every function of `impls` to observe
    it (harness/runner/observe.py)."""
    if isinstance(step, Trigger):
        for watch in step.watch:
            if watch.count != 0:
                key = (watch.object, watch.func)
                ftrace_call(k, key, impl_now(k, key))
    for text, impl in impls.items():
        obj, _, func = text.partition(":")
        ftrace_call(k, (obj, func), impl)


def func_stacks(k: Kernel) -> dict[str, list[str]]:
    """Every func stack that holds an entry: `object:func` -> the patches whose
    klp_funcs are on it, bottom first, a nop as `patch:nop` (struct klp_ops's
    func_stack, list_add_rcu'd at the head: the model keeps the top last)."""
    return {
        f"{obj}:{func}": [f"{f.obj.patch.name}:nop" if f.nop else f.obj.patch.name for f in stack]
        for (obj, func), stack in sorted(k.klp_ops.items())
        if stack
    }
