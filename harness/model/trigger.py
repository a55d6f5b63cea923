"""What a `trigger` step observes: per watched function, which implementations ran.

The command's tasks start during the step, so they run in the target state of a
transition (as `call` steps do, docs/model-notes.md "Who calls").  The implementation
is what the ftrace handler picks (`klp_ftrace_handler`); a patch's default replacement
of a real function continues in the original's body (kmod_templates/livepatch.c.j2),
so there both the patch and the original count the call.  A function of a module
that is not loaded runs nowhere: the runner's probe on it (`MOD:SYM`) waits for the
module (harness/runner/trigger.py).
"""

from __future__ import annotations

from harness.model.kernel.klp import KLP_UNDEFINED, FuncKey, KlpPatch, func_key
from harness.model.kernel.patch import klp_ftrace_handler
from harness.model.kernel.system import Kernel
from harness.scenario.step_types import Trigger, Watch
from harness.scenario.types import VMLINUX, VMLINUX_FUNCS, PatchModule


def runs_original(code: KlpPatch, watch: Watch) -> bool:
    """Whether `code`'s replacement of the watched function is the default one that
    goes on into the original (a real function, no body of the scenario's own)."""
    desc = code.mod.desc
    assert isinstance(desc, PatchModule)
    if desc.ko:
        return False  # a module file's replacement: counted by its own entry probe
    for obj in desc.objects:
        if obj.name == watch.object and watch.func in obj.funcs:
            real = obj.name != VMLINUX or watch.func not in VMLINUX_FUNCS
            return real and obj.spec(watch.func).body is None
    return False


def watched_key(watch: Watch) -> FuncKey:
    """The func stack a watched function is called through (sympos 0 and 1 name the
    same function, as for a patch's func)."""
    return func_key(watch.object, watch.func, watch.sympos)


def ran_text(impls: list[str], count: int | None) -> str:
    """The `ran` value of one function (harness/outcome/record.py)."""
    text = "+".join(sorted(impls)) or "none"
    return text if count is None else f"{text}*{count}"


def predict_ran(k: Kernel, step: Trigger) -> dict[str, str]:
    state = k.klp_target_state if k.klp_transition_patch is not None else KLP_UNDEFINED
    ran: dict[str, str] = {}
    for watch in step.watch:
        code = klp_ftrace_handler(k, watched_key(watch), state)
        if watch.object != VMLINUX and watch.object not in k.modules:
            impls = []  # nothing to call: the probe waits for the module (MOD:SYM)
        elif code is None:
            impls = ["orig"]
        else:
            impls = [code.name] + (["orig"] if runs_original(code, watch) else [])
        ran[watch.key] = ran_text(impls, watch.count)
    return ran
