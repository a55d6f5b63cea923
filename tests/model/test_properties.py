"""Invariants of the reference model under random step sequences (hypothesis).

The steps come from harness.model.fuzz: every step over a small module set with shared
functions, blockers, a cumulative patch, callbacks, states, shadow variables and
ftrace_enabled, so random sequences reach blocked transitions, reverses, forces,
replaces and module hooks during transitions.  After every step the model must be in a
state the kernel could be in; these checks look at the model's insides as well as at
the records it predicts.
"""

from __future__ import annotations

import errno
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.model.fuzz import FUZZ_SCENARIO, FUZZ_STEPS
from harness.model.kernel.klp import KLP_UNDEFINED, KLP_UNPATCHED, KlpPatch
from harness.model.kernel.transition import klp_check_stack
from harness.model.predict import StepModel
from harness.model.refusals import blockers
from harness.outcome.record import StepRecord
from harness.scenario.step_types import Disable, Enable, Force, Load, Park, Release, Step, Unload

steps_strategy = st.lists(st.sampled_from(FUZZ_STEPS), min_size=1, max_size=40)
SETTINGS = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEBUG_LINES = (
    "initializing patching transition",
    "initializing unpatching transition",
    "completing patching transition",
    "completing unpatching transition",
    "canceling patching transition",
    "reversing transition",
)


def run(steps: list[Step], **kwargs: bool) -> tuple[StepModel, list[StepRecord]]:
    model = StepModel(FUZZ_SCENARIO, strict=False, **kwargs)
    return model, [model.step(i, step) for i, step in enumerate(steps)]


@SETTINGS
@given(steps_strategy)
def test_invariants_hold_after_every_step(steps: list[Step]) -> None:
    model = StepModel(FUZZ_SCENARIO, strict=False)
    k = model.kernel
    gone: dict[int, KlpPatch] = {}  # patches that left klp_patches (kept alive: ids stay unique)
    for i, step in enumerate(steps):
        before = {name: mod.refcnt for name, mod in k.modules.items()}
        record = model.step(i, step)
        listed = {id(p) for p in k.klp_patches}
        assert not listed & gone.keys(), "a disabled or replaced patch came back"
        for mod in k.modules.values():
            if mod.patch is not None and id(mod.patch) not in listed:
                gone[id(mod.patch)] = mod.patch
        check_func_stacks(model)
        check_transition(model, record)
        check_sysfs_and_refcounts(model, record)
        check_step_result(step, record, before)
        check_module_memory(model)


def check_func_stacks(model: StepModel) -> None:
    """Each func stack holds patched funcs of listed patches in list order, and what a
    call runs is the top of the stack (or the entry below it for a task not yet
    switched), or the original."""
    k = model.kernel
    order = {id(p): n for n, p in enumerate(k.klp_patches)}
    for key, stack in k.klp_ops.items():
        assert stack, "empty func stacks are removed"
        positions = [order[id(f.obj.patch)] for f in stack]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        for func in stack:
            assert func.patched and func.obj.patched and func.obj.loaded
            assert func.key == key
    state = k.klp_target_state if k.klp_transition_patch else KLP_UNDEFINED
    for text, impl in model.impls().items():
        obj, func_name = text.split(":")
        stack = k.klp_ops.get((obj, func_name), [])
        allowed = {"orig"}
        if stack:
            allowed |= {_code(stack[-1].code)}
            if stack[-1].transition and state == KLP_UNPATCHED and len(stack) > 1:
                allowed = {_code(stack[-2].code)}
            elif stack[-1].transition and state == KLP_UNPATCHED:
                allowed = {"orig"}
            else:
                allowed = {_code(stack[-1].code)}
        assert impl in allowed, (text, impl, allowed)


def _code(patch: KlpPatch | None) -> str:
    return "orig" if patch is None else patch.name


def check_transition(model: StepModel, record: StepRecord) -> None:
    """A transition pending after a step is blocked by a parked task; otherwise nothing
    is in transition and nothing is left to free."""
    k = model.kernel
    patch = k.klp_transition_patch
    assert not k.free_work
    if patch is None:
        assert record.pending is None
        assert k.klp_target_state == KLP_UNDEFINED
        assert all(not f.transition for s in k.klp_ops.values() for f in s)
        assert all(t.patch_state == KLP_UNDEFINED for t in k.tasks)
        return
    assert record.pending == patch.name
    assert patch in k.klp_patches
    stuck = [t for t in k.tasks if t.patch_state != k.klp_target_state]
    assert stuck and all(not klp_check_stack(k, t) for t in stuck)
    assert "nothing" not in blockers(k)
    assert patch.enabled == (k.klp_target_state != KLP_UNPATCHED)


def check_sysfs_and_refcounts(model: StepModel, record: StepRecord) -> None:
    k = model.kernel
    dirs = {path.split("/")[0] for path in record.sysfs}
    assert dirs == {p.name for p in k.klp_patches}, "sysfs dirs exist iff patch registered"
    for patch in k.klp_patches:
        assert patch.kobj
        assert patch.enabled or patch is k.klp_transition_patch
        for obj in patch.objects:
            if obj.is_module:
                assert (obj.mod is not None) == (obj.name in k.modules)
            assert record.sysfs[f"{patch.name}/{obj.name}/patched"] == str(int(obj.patched))
            assert obj.patched == obj.loaded
            assert not obj.dynamic or patch is k.klp_transition_patch
    for name, refcnt in record.modules.items():
        mod = k.modules[name]
        assert refcnt == str(mod.refcnt) and mod.refcnt in (0, 1)
        if mod.patch is None:
            assert mod.refcnt == 0
        else:
            listed = mod.patch in k.klp_patches
            assert mod.refcnt == 1 if listed else mod.refcnt == int(mod.patch.forced)
    assert k.ftrace_enabled or not k.klp_ops


def check_module_memory(model: StepModel) -> None:
    """The generated modules' allocations (their klp_state data) are exactly what
    loaded modules still point at: nothing leaked, nothing dangling.  (Touching freed
    memory raises ModuleMemoryError during the step itself.)"""
    k = model.kernel
    pointed = [
        handle
        for mod in k.modules.values()
        if mod.patch is not None
        for handle in mod.patch.state_data.values()
        if handle is not None
    ]
    assert sorted(pointed) == sorted(k.heap), "leaked or shared state data"


def check_step_result(step: Step, record: StepRecord, before: dict[str, int]) -> None:
    """The runner's own line comes first, and errnos are the ones the kernel gives."""
    match step:
        case Load(module=name):
            assert record.log[0].startswith(f"% modprobe {name}")
            if name in before:
                assert record.errno == 0 and len(record.log) == 1
            assert record.errno in (0, errno.EBUSY, errno.EINVAL, errno.ENODEV)
        case Unload(module=name):
            assert record.log[0] == f"% rmmod {name}"
            want = errno.ENOENT if name not in before else errno.EAGAIN if before[name] else 0
            assert record.errno == want
        case Enable() | Disable() | Force() | Park() | Release():
            assert record.log[0].startswith("% echo ")
            assert record.errno in (0, errno.ENOENT, errno.EINVAL, errno.EBUSY)


@settings(max_examples=600, deadline=None)
@given(steps_strategy)
def test_dynamic_debug_only_adds_debug_lines(steps: list[Step]) -> None:
    _, with_debug = run(steps)
    _, without = run(steps, dyndbg=False)
    for a, b in zip(with_debug, without, strict=True):
        assert [line for line in a.log if not any(d in line for d in DEBUG_LINES)] == b.log
        assert (a.errno, a.sysfs, a.modules, a.impls, a.pending) == (
            b.errno,
            b.sysfs,
            b.modules,
            b.impls,
            b.pending,
        )


@settings(max_examples=300, deadline=None)
@given(steps_strategy)
def test_predictions_are_deterministic(steps: list[Step]) -> None:
    assert run(steps)[1] == run(steps)[1]


@settings(max_examples=600, deadline=None)
@given(steps_strategy)
def test_6_12_differs_only_by_the_replace_attribute(steps: list[Step]) -> None:
    _, old = run(steps)
    model = StepModel(FUZZ_SCENARIO, "6.12", strict=False)
    for i, (step, a) in enumerate(zip(steps, old, strict=True)):
        b = model.step(i, step)
        extra = {path: v for path, v in b.sysfs.items() if path not in a.sysfs}
        assert all(path.endswith("/replace") for path in extra)
        assert {p: v for p, v in b.sysfs.items() if p not in extra} == a.sysfs
        assert (a.log, a.errno, a.impls) == (b.log, b.errno, b.impls)


def test_random_sequences_reach_the_hard_corners() -> None:
    """Guards the usefulness of the properties above: random sequences over the fuzz set
    do block, reverse, force, replace, refuse modules, fail ftrace, fail pre_patch."""
    rng = random.Random(1)
    seen: set[str] = set()
    corners = {
        "reversing transition",
        "forcing remaining",
        "refusing to load",
        "failed to register ftrace",
        "not compatible",
        "applying patch",
        "reverting patch",
        "pre-patch callback failed",
        "taking over",
        "passing the console_loglevel",
    }
    for _ in range(1500):
        model = StepModel(FUZZ_SCENARIO, strict=False)
        for i in range(rng.randint(1, 40)):
            record = model.step(i, rng.choice(FUZZ_STEPS))
            text = "\n".join(record.log)
            seen |= {corner for corner in corners if corner in text}
            if record.pending:
                seen.add("pending")
            if any(
                mod.patch is not None and mod.patch.forced for mod in model.kernel.modules.values()
            ):
                seen.add("forced")
    assert seen == corners | {"pending", "forced"}
