"""Scenario -> predicted `StepRecord`s: the reference model's public entry point.

Each step is applied to a fresh `Kernel`, then *settled*: the kernel's retry work and
free work run until nothing more happens without outside help.  A transition then
either has completed or is blocked by a parked task, and stays so until a later step
releases, unloads, reverses or forces it.  The runner waits for exactly this settled
state before it observes, so a record describes the state after settling.

Steps whose outcome the real kernel would not make deterministic, or that would crash
it, are refused with a ScenarioError naming the step (see `StepModel.check_blocked`
and `StepModel.check_unload`).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from harness.errors import ScenarioError, UsageError
from harness.model import bpf, retries
from harness.model.check import predict_check
from harness.model.ftrace import after_step, do_trace, do_untrace
from harness.model.klp import KLP_PATCHED, KLP_UNDEFINED
from harness.model.modules import (
    do_call,
    do_enabled,
    do_force,
    do_load,
    do_set_param,
    do_sysctl_ftrace,
    do_unload,
    do_wait_timed,
)
from harness.model.patch import klp_ftrace_handler
from harness.model.profiles import DEFAULT_SERIES, profile_for
from harness.model.replace import run_free_work
from harness.model.system import Kernel
from harness.model.tasks import (
    checked_while_running,
    kill,
    observe_actors,
    pinned_refusal,
    rcu_tasks_holdouts,
    spawn,
    spinner_refusal,
    spinner_started,
)
from harness.model.transition import klp_check_stack, klp_transition_work_fn
from harness.model.trigger import predict_ran
from harness.model.variants import Variant
from harness.record import StepRecord
from harness.scenario.step_types import (
    Attach,
    Call,
    Check,
    Detach,
    Disable,
    Enable,
    Force,
    Kill,
    Load,
    Park,
    Release,
    SetParam,
    Spawn,
    Start,
    Step,
    Stop,
    SysctlFtrace,
    Trace,
    Trigger,
    Unload,
    Untrace,
    Wait,
    format_step,
)
from harness.scenario.types import VMLINUX, Scenario, TargetModule

WRITE_ONLY = "<write-only>"
READ_ONLY_STEPS = (Call, Wait, Trigger, Trace, Untrace, Check)


def predict(scenario: Scenario, series: str = DEFAULT_SERIES) -> list[StepRecord]:
    """The predicted record of every step of `scenario` on kernel `series`."""
    model = StepModel(scenario, series)
    return [model.step(i, step) for i, step in enumerate(scenario.steps)]


def predicted_log(scenario: Scenario, series: str = DEFAULT_SERIES) -> list[str]:
    """All predicted log lines of a scenario, concatenated (an upstream transcript)."""
    return [line for record in predict(scenario, series) for line in record.log]


class StepModel:
    """The model of one scenario run, one step at a time (also used by property tests
    and the benchmark).  `strict=False` drops the refusals of `check_blocked`;
    `variant` predicts with a design the kernel did not take (harness.model.variants)."""

    def __init__(
        self,
        scenario: Scenario,
        series: str = DEFAULT_SERIES,
        *,
        dyndbg: bool = True,
        strict: bool = True,
        variant: Variant | None = None,
    ) -> None:
        unread = [p.name for p in scenario.patches if not p.resolved]
        if unread:  # its objects are not known: predicting would mislead
            raise UsageError(
                f"{scenario.path}: module file of {', '.join(unread)} not read for a "
                "profile (harness.modules.external.resolve_scenario)"
            )
        self.kernel = Kernel(scenario, profile_for(series), dyndbg=dyndbg, variant=variant)
        self.strict = strict
        self.funcs = [((obj, func), f"{obj}:{func}") for obj, func in scenario.patched_funcs()]
        self.profile = self.kernel.profile
        self.last: StepRecord | None = None
        self.retry_at = 0

    def step(self, index: int, step: Step) -> StepRecord:
        errno_value = self.apply(index, step)
        record = self.record(index, step, errno_value)
        self.last = record
        return record

    def apply(self, index: int, step: Step) -> int:
        """Apply and settle one step; returns its errno and leaves its log lines in
        `kernel.log`."""
        k = self.kernel
        k.log = []
        k.step_index, k.completed_by_retry = index, False
        if self.strict:
            self.check_unload(index, step)
        self.check_spinner(index, step)
        self.refuse(index, step, bpf.step_refusal(k, step))
        shutdowns = k.ftrace_shutdowns
        errno_value = run_step(k, step)
        self.retry_at = len(k.log)  # a retry's lines come after the action's
        if self.strict:
            self.check_reversal(index, step)
        klp_transition_work_fn(k)
        self.check_pinned(index, step)
        run_free_work(k)
        if k.ftrace_shutdowns != shutdowns:
            self.check_holdouts(index, step)
        if self.strict:
            self.check_blocked(index, step)
        return errno_value

    def check_unload(self, index: int, step: Step) -> None:
        """Refuse unloading a patch module whose code a parked task still runs.

        A forced transition leaves tasks where they are, and the kernel pins only the
        modules of the patches force marks (6.1 transition.c:657-664: the disabled one,
        or those a replace patch replaces).  A task forced past a non-replace enable
        still sleeps in the previous patch's function; a later replace patch checks only
        the top of each func stack (transition.c:209-227, klp_check_stack_func), completes,
        and drops that patch's module reference unforced (core.c:708-709).  rmmod then frees
        the code the task returns into: an Oops in the kworker (seen on 6.1)."""
        if not isinstance(step, Unload):
            return
        k = self.kernel
        mod = k.modules.get(step.module)
        if mod is None or mod.patch is None or mod.refcnt:
            return
        for task in k.tasks:
            if task.code is mod.patch:
                raise ScenarioError(
                    f"steps[{index}]",
                    f"`{format_step(step)}` would free code that {task.target}'s parked work "
                    f"still runs ({task.key[0]}:{task.key[1]}, left there by a forced "
                    "transition): the kernel Oopses; release it first",
                    str(k.scenario.path),
                )

    def check_spinner(self, index: int, step: Step) -> None:
        """Refuse starting a spinner the guest could not survive (tasks.spinner_refusal)."""
        spinner = spinner_started(self.kernel.scenario, step)
        why = spinner_refusal(self.profile, spinner) if spinner is not None else None
        if why is not None:
            raise ScenarioError(
                f"steps[{index}]", f"`{format_step(step)}`: {why}", str(self.kernel.scenario.path)
            )

    def refuse(self, index: int, step: Step, why: str | None) -> None:
        if why is not None:
            raise ScenarioError(
                f"steps[{index}]", f"`{format_step(step)}`: {why}", str(self.kernel.scenario.path)
            )

    def check_pinned(self, index: int, step: Step) -> None:
        """Refuse a transition a pinned spinner holds where when it ends is timing
        (tasks.pinned_refusal)."""
        why = pinned_refusal(self.kernel)
        if why is not None:
            raise ScenarioError(
                f"steps[{index}]", f"`{format_step(step)}`: {why}", str(self.kernel.scenario.path)
            )

    def check_holdouts(self, index: int, step: Step) -> None:
        """Refuse removing an ftrace handler while a spinner runs: ftrace_shutdown()
        waits in synchronize_rcu_tasks() until it stops (tasks.rcu_tasks_holdouts)."""
        holdouts = rcu_tasks_holdouts(self.kernel)
        if holdouts:
            raise ScenarioError(
                f"steps[{index}]",
                f"`{format_step(step)}` removes an ftrace handler: synchronize_rcu_tasks() in "
                f"ftrace_shutdown() waits for ever for {', '.join(holdouts)}, which never "
                "schedules voluntarily (stop it first, or give it rcu_tasks_qs = true)",
                str(self.kernel.scenario.path),
            )

    def check_reversal(self, index: int, step: Step) -> None:
        """Refuse reversing the disable of the bottom patch of a shared func stack.

        The reversed transition targets PATCHED, so klp_check_stack_func() checks the
        code *below* each func: list_is_singular() is false, and list_next_entry() of
        the bottom func is the list head inside struct klp_ops, read as a klp_func
        (6.1 transition.c:216-226, 6.12 :235-243, 7.3 :226-234): a bogus address range,
        so whether a task may switch is undefined."""
        k = self.kernel
        patch = k.klp_transition_patch
        if not isinstance(step, Enable) or patch is None or patch.name != step.patch:
            return
        if k.klp_target_state != KLP_PATCHED:
            return
        for obj in patch.objects:
            for func in obj.funcs:
                stack = k.klp_ops.get(func.key, [])
                if func.patched and len(stack) > 1 and stack[0] is func:
                    raise ScenarioError(
                        f"steps[{index}]",
                        f"`{format_step(step)}` reverses the disable of {patch.name}, the "
                        f"bottom of {func.key[0]}:{func.key[1]}'s func stack: the kernel's "
                        "stack check then reads the list head as a klp_func "
                        "(transition.c:224 on 6.1), undefined",
                        str(k.scenario.path),
                    )

    def check_blocked(self, index: int, step: Step) -> None:
        """Refuse a wait that can never end (a `wait --retries` ends)."""
        k = self.kernel
        patch = k.klp_transition_patch
        if patch is None:
            return
        k.blocked_steps += 1
        why = f"'{patch.name}' stays in transition, blocked by {blockers(k)}"
        waits = (
            (isinstance(step, Load) and not step.nowait and step.module == patch.name)
            or (isinstance(step, Disable) and not step.nowait and step.patch == patch.name)
            or (isinstance(step, Wait) and step.patch == patch.name and step.retries is None)
        )
        if waits:
            hint = "" if isinstance(step, Wait) else " (add --nowait to go on without it)"
            raise ScenarioError(
                f"steps[{index}]",
                f"`{format_step(step)}` would wait for ever: {why}{hint}",
                str(k.scenario.path),
            )

    def record(self, index: int, step: Step, errno_value: int) -> StepRecord:
        record = self._record(index, step, errno_value)
        k = self.kernel
        if k.klp_transition_patch is not None or k.completed_by_retry:
            record.due = retries.due(
                k.signals_epoch, k.direct_failures, self.retry_at, k.completed_by_retry
            )
        if isinstance(step, Trigger):
            record.ran = predict_ran(self.kernel, step)
        elif isinstance(step, Check):
            record.ran = predict_check(self.kernel, step, index)
        after_step(self.kernel, step, record.impls)
        return record

    def _record(self, index: int, step: Step, errno_value: int) -> StepRecord:
        k = self.kernel
        last = self.last
        if last is not None and isinstance(step, READ_ONLY_STEPS):
            # reads change nothing, and nothing blocked settles by itself
            return StepRecord(
                index,
                _step_text(step),
                errno_value,
                k.log,
                dict(last.sysfs),
                dict(last.modules),
                dict(last.impls),
                last.pending,
                actors=dict(last.actors),
            )
        return StepRecord(
            index=index,
            step=_step_text(step),
            errno=errno_value,
            log=k.log,
            sysfs=self.sysfs(),
            modules={name: str(mod.refcnt) for name, mod in k.modules.items()},
            impls=self.impls(),
            pending=k.klp_transition_patch.name if k.klp_transition_patch else None,
            actors=observe_actors(k),
        )

    def sysfs(self) -> dict[str, str]:
        """Every readable file under /sys/kernel/livepatch (func dirs hold none).

        In module load order, not sorted: records are compared as dicts, and this
        runs once per predicted step."""
        k = self.kernel
        replace_attr = self.profile.sysfs_replace
        stack_order = self.profile.sysfs_stack_order
        tree: dict[str, str] = {}
        for name, mod in k.modules.items():
            patch = mod.patch
            if patch is None or not patch.kobj:
                continue
            tree[name + "/enabled"] = "1" if patch.enabled else "0"
            tree[name + "/force"] = WRITE_ONLY
            if replace_attr:
                tree[name + "/replace"] = "1" if patch.replace else "0"
            if stack_order:  # its place in klp_patches; all of them if it left (core.c)
                order = k.klp_patches.index(patch) + 1 if patch in k.klp_patches else None
                tree[name + "/stack_order"] = str(order or len(k.klp_patches))
            tree[name + "/transition"] = "1" if patch is k.klp_transition_patch else "0"
            for obj in patch.objects:
                tree[f"{name}/{obj.name}/patched"] = "1" if obj.patched else "0"
        return tree

    def impls(self) -> dict[str, str]:
        """`object:func` -> whose implementation a call runs now ("orig" or a patch)."""
        k = self.kernel
        state = k.klp_target_state if k.klp_transition_patch else KLP_UNDEFINED
        modules = k.modules
        impls: dict[str, str] = {}
        for key, text in self.funcs:
            if key[0] != VMLINUX and key[0] not in modules:
                continue
            code = klp_ftrace_handler(k, key, state)
            impls[text] = code.name if code is not None else "orig"
        return impls


@lru_cache(maxsize=4096)
def _step_text(step: Step) -> str:
    return format_step(step)


def run_step(k: Kernel, step: Step) -> int:
    """Carry out one step as the runner does; returns its positive errno or 0."""
    match step:
        case Load():
            return do_load(k, step)
        case Unload(module=name):
            return do_unload(k, name)
        case Enable(patch=name):
            return do_enabled(k, name, True)
        case Disable(patch=name):
            return do_enabled(k, name, False)
        case Force(patch=name):
            return do_force(k, name)
        case SetParam(module=name, param=param, value=value):
            return do_set_param(k, name, param, value)
        case Spawn(name=name):
            return spawn(k, name)
        case Kill(name=name):
            return kill(k, name)
        case Start(target=name) | Stop(target=name):
            target = k.scenario.module(name)
            assert isinstance(target, TargetModule) and target.spinner is not None
            value = "Y" if isinstance(step, Start) else "N"
            return do_set_param(k, name, target.spinner.param, value)
        case Release(target=name) if _timed(k, name):
            return do_wait_timed(k, name)
        case Park(target=name) | Release(target=name):
            target = k.scenario.module(name)
            assert isinstance(target, TargetModule) and target.blocker is not None
            value = "Y" if isinstance(step, Park) else "N"
            return do_set_param(k, name, target.blocker.param, value)
        case SysctlFtrace(value=value):
            return do_sysctl_ftrace(k, value)
        case Call(object=obj, func=func):
            return do_call(k, obj, func)
        case Attach(name=name):
            return bpf.attach(k, next(p for p in k.scenario.bpf if p.name == name))
        case Detach(name=name):
            return bpf.detach(k, name)
        case Trace():
            return do_trace(k, step)
        case Untrace():
            return do_untrace(k)
        case Wait() | Trigger() | Check():
            return 0
    raise AssertionError(f"unknown step {step!r}")


def _timed(k: Kernel, name: str) -> bool:
    target = k.scenario.module(name)
    return isinstance(target, TargetModule) and bool(target.blocker and target.blocker.timed)


def blockers(k: Kernel) -> str:
    """The parked tasks that keep the current transition from completing."""
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


def predict_all(
    scenarios: Iterable[Scenario], series: str = DEFAULT_SERIES
) -> dict[str, list[StepRecord]]:
    """Predictions of several scenarios by name (raises on the first refused one)."""
    return {scenario.name: predict(scenario, series) for scenario in scenarios}
