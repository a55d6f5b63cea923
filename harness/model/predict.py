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
from harness.model import refusals, retries
from harness.model.check import predict_check
from harness.model.kernel import bpf
from harness.model.kernel.ftrace import do_trace, do_untrace
from harness.model.kernel.klp import KLP_UNDEFINED, FuncKey
from harness.model.kernel.modules import (
    do_call,
    do_enabled,
    do_force,
    do_load,
    do_set_param,
    do_sysctl_ftrace,
    do_unload,
    do_wait_timed,
)
from harness.model.kernel.patch import after_step, func_stacks, klp_ftrace_handler
from harness.model.kernel.replace import run_free_work
from harness.model.kernel.system import Kernel
from harness.model.kernel.tasks import (
    kill,
    observe_actors,
    pinned_refusal,
    spawn,
    spinners_call,
)
from harness.model.kernel.transition import klp_transition_work_fn
from harness.model.profiles import DEFAULT_SERIES, profile_for
from harness.model.trigger import predict_ran, watched_key
from harness.model.variants import Variant
from harness.outcome.record import StepRecord
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


def predict(
    scenario: Scenario, series: str = DEFAULT_SERIES, variant: Variant | None = None
) -> list[StepRecord]:
    """The predicted record of every step of `scenario` on kernel `series`, up to a
    step whose kernel report (a known kernel bug) ends what the model follows; with a
    `variant`, what that design the kernel did not take predicts."""
    model = StepModel(scenario, series, variant=variant)
    records: list[StepRecord] = []
    for i, step in enumerate(scenario.steps):
        records.append(model.step(i, step))
        if records[-1].report:
            break
    return records


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
            self.refuse(index, step, refusals.unload(k, step))
        self.refuse(index, step, refusals.spinner(k, step))
        self.refuse(index, step, refusals.prefixed(bpf.step_refusal(k, step)))
        waits = len(k.rcu_tasks_waits)
        errno_value = run_step(k, step)
        self.retry_at = len(k.log)  # a retry's lines come after the action's
        if self.strict:
            self.refuse(index, step, refusals.reversal(k, step))
        klp_transition_work_fn(k)
        self.refuse(index, step, refusals.prefixed(pinned_refusal(k)))
        run_free_work(k)
        if len(k.rcu_tasks_waits) != waits:
            self.refuse(index, step, refusals.holdouts(k, k.rcu_tasks_waits[-1]))
        if self.strict:
            self.refuse(index, step, refusals.blocked(k, step))
        return errno_value

    def refuse(self, index: int, step: Step, why: str | None) -> None:
        """Raise the model's refusal of `step`: `why` follows the step's text."""
        if why is not None:
            raise ScenarioError(
                f"steps[{index}]", f"`{format_step(step)}`{why}", str(self.kernel.scenario.path)
            )

    def record(self, index: int, step: Step, errno_value: int) -> StepRecord:
        k = self.kernel
        report = k.report or (bpf.report_after(k, self.called(step)) if k.broken_ops else "")
        if report:  # the kernel is hurt: nothing else of the step is observed
            return StepRecord(index, _step_text(step), report=report)
        record = self._record(index, step, errno_value)
        if k.klp_transition_patch is not None or k.completed_by_retry:
            record.due = retries.due(
                k.signals_epoch, k.direct_failures, self.retry_at, k.completed_by_retry
            )
        if isinstance(step, Trigger):
            record.ran = predict_ran(self.kernel, step)
        elif isinstance(step, Check):
            record.ran = predict_check(self.kernel, step, index)
        after_step(self.kernel, step, record.impls)
        spinners_call(self.kernel)
        record.stacks = func_stacks(k)
        return record

    def called(self, step: Step) -> set[FuncKey]:
        """The functions a step calls: its own `call` or trigger's, and every function
        the runner reads after it (`impls`)."""
        keys: set[FuncKey] = {key for key, _text in self.funcs}
        if isinstance(step, Call):
            keys.add((step.object, step.func))
        elif isinstance(step, Trigger):
            keys |= {watched_key(w) for w in step.watch}
        return keys

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


def predict_all(
    scenarios: Iterable[Scenario], series: str = DEFAULT_SERIES
) -> dict[str, list[StepRecord]]:
    """Predictions of several scenarios by name (raises on the first refused one)."""
    return {scenario.name: predict(scenario, series) for scenario in scenarios}
