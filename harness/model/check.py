"""`check PATCH` steps: whether a patch's check command passes, in kpatch's convention
(a `LOADED` test fails before the patch is in effect, passes while it is, fails once
it is not).

"In effect" is what a task started now runs (the command's tasks start during the
step, as for `call` and `trigger`: docs/model-notes.md "Who calls"): every function
the patch replaces, in the objects that are loaded, runs the patch's code
(klp_ftrace_handler, 6.1 kernel/livepatch/patch.c:40-107: the top of the func stack,
or the one below it for a task still unpatched during a transition).  The command
passes when all of them do and fails when all run the original.  When another
patch's replacement runs for some of them (a later patch on the same function, or a
replace patch that keeps it), what the command sees depends on that patch's code,
which the model does not know: it refuses, as it does when no function of the patch
is in a loaded object.
"""

from __future__ import annotations

from harness.errors import ScenarioError
from harness.model.kernel.klp import ORIG, func_key
from harness.model.kernel.patch import impl_now
from harness.model.kernel.system import Kernel
from harness.scenario.step_types import Check
from harness.scenario.types import VMLINUX, PatchModule

PASSES = "passes"
FAILS = "fails"


def ran_key(step: Check) -> str:
    """The record's `ran` key of a check step."""
    return f"check {step.patch}"


def predict_check(k: Kernel, step: Check, index: int) -> dict[str, str]:
    desc = k.scenario.module(step.patch)
    assert isinstance(desc, PatchModule)
    keys = [
        func_key(obj.name, func, obj.spec(func).sympos)
        for obj in desc.objects
        if obj.name == VMLINUX or obj.name in k.modules
        for func in obj.funcs
    ]
    impls = {impl_now(k, key) for key in keys}
    if impls == {step.patch}:
        return {ran_key(step): PASSES}
    if impls == {ORIG}:
        return {ran_key(step): FAILS}
    why = (
        f"{', '.join(sorted(impls - {step.patch, ORIG}))}'s code runs for some of its functions"
        if impls - {step.patch, ORIG}
        else "no function of it is in a loaded object"
        if not impls
        else "some of its functions run it, others the original"
    )
    raise ScenarioError(
        f"steps[{index}]",
        f"check {step.patch}: {why}; whether its command passes is not the model's to say",
        str(k.scenario.path),
    )


def observed_check(step: Check, exit_code: int, message: str) -> dict[str, str]:
    """The record of what the guest said: 0 passes, 1-125 fails; a command that could
    not run (126, 127: not executable, not found) says so with its message."""
    if exit_code == 0:
        return {ran_key(step): PASSES}
    if exit_code in (126, 127):
        return {ran_key(step): f"cannot run (exit {exit_code}): {message.strip()}"}
    return {ran_key(step): FAILS}
