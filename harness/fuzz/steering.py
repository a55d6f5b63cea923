"""Steps drawn from what is possible now: the model steers a history as it is drawn.

Uniform draws over every step of a module set (29-101 of them) rarely line up what
the interesting paths of kernel/livepatch need: a task parked in a function, a patch
of that function loaded without waiting, then a reverse or a force while the
transition is blocked.  `Steering` keeps the model's state of the history drawn so
far.  A step is drawn in two choices: a group (a module of the set, SYSTEM, or ANY),
then a step from that group's menu, which offers only what does something in the
group's state: a module that is not loaded can be loaded, a loaded patch disabled or
unloaded, a patch whose transition is blocked reversed or forced, a parked task
released, a free one parked.  A few steps the kernel refuses (EBUSY, EAGAIN,
EINVAL) stay on the menus, and ANY draws from every step: errors are behaviour too.
While a transition is blocked its patch and the targets that block it are offered
once more; once it has been blocked for MAX_BLOCKED_STEPS - 1 steps only they are
(the next step ends or turns it before the kernel would start signalling).

A drawn step the model refuses (docs/model-notes.md) is steered around where a step
means the same: a load or disable that would wait for ever on a blocked transition
becomes its `--nowait` form.  Otherwise the history ends before it.  Either way it
is counted (`History.steered`).

Everything depends only on the choices before, so the same choices give the same
history (same seed, same histories), and hypothesis' shrinker works on the choices
as usual.  Groups come in a fixed order and a group's menu depends on little more
than its own module's state, so a choice mostly keeps its meaning when a step before
it is shrunk away; lower choices mean earlier modules and simpler steps (loads
first).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from functools import lru_cache

from harness.errors import ScenarioError
from harness.fuzz.palette import TARGETS, scenario_of, steps_of
from harness.model.kernel.transition import klp_check_stack
from harness.model.predict import StepModel
from harness.scenario.step_types import Disable, Load, Step
from harness.scenario.steps import parse_steps
from harness.scenario.types import PatchModule

# How many more times the patch in transition and the targets that block it are
# offered while the transition is blocked: their steps are the rare paths.
MOVING_WEIGHT = 3
SYSTEM = "(system)"  # vmlinux calls, ftrace_enabled
ANY = "(any)"  # every step over the set: errors and no-ops the menus leave out

# A blocked transition is turned, ended or forced within this many steps: each pending
# step waits for a kernel retry (~1 s), and histories stay short to shrink.
MAX_BLOCKED_STEPS = 5


@lru_cache(maxsize=4096)
def _parsed(patches: tuple[str, ...], texts: tuple[str, ...]) -> tuple[Step, ...]:
    scenario = scenario_of(patches)
    return parse_steps(list(texts), scenario.targets, scenario.patches)


class Steering:
    """The model's state after the steps drawn so far, and the menus of the next."""

    def __init__(self, patches: tuple[str, ...], series: str) -> None:
        self.patches = patches
        self.series = series
        self.scenario = scenario_of(patches)
        self.descs: dict[str, PatchModule] = {p.name: p for p in self.scenario.patches}
        self.model = StepModel(self.scenario, series, dyndbg=False)
        self.steps: list[Step] = []
        self.steered = 0  # drawn steps the model refused: made --nowait or ended at
        self.base = (*patches, *(t.name for t in TARGETS), SYSTEM, ANY, *patches)

    # ---- the menus -------------------------------------------------------------------

    def groups(self) -> tuple[str, ...]:
        """What the next step is about: a module of the set, SYSTEM or ANY, always in
        the same order (so a choice keeps its meaning when a step before it is
        shrunk away).  While a task is parked, the patches of its function come
        MOVING_WEIGHT more times; while a transition is blocked, its patch (twice:
        reverse or force) and the targets whose tasks block it (release or unload).
        A transition blocked for MAX_BLOCKED_STEPS - 1 steps leaves only those: the
        next step must end or turn it."""
        k = self.model.kernel
        patch = k.klp_transition_patch
        if patch is None:
            return self.base + self._parked_on() * MOVING_WEIGHT
        moving = (patch.name, patch.name, *self._blocking())
        if k.blocked_steps >= MAX_BLOCKED_STEPS - 1:
            return moving
        return self.base + moving * MOVING_WEIGHT

    def menu(self, group: str) -> tuple[Step, ...]:
        """The steps of one group worth drawing now, simplest first."""
        if group == ANY:
            return steps_of(self.patches)
        return _parsed(self.patches, tuple(self._texts(group)))

    def _texts(self, group: str) -> list[str]:
        k = self.model.kernel
        if group == SYSTEM:
            return [
                "call vmlinux:cmdline_proc_show",
                "call vmlinux:meminfo_proc_show",
                f"sysctl ftrace_enabled={0 if k.ftrace_enabled else 1}",
            ]
        if group in self.descs:
            return self._patch_texts(group)
        target = next(t for t in TARGETS if t.name == group)
        assert target.blocker is not None
        if group not in k.modules:
            return [f"load {group}", f"load {group} {target.blocker.param}=Y"]
        parked = any(task.target == group for task in k.tasks)
        texts = [f"release {group}" if parked else f"park {group}", f"unload {group}"]
        if group in self._blocking():
            return texts
        return texts + [f"call {group}:{func}" for func in target.funcs]

    def _patch_texts(self, name: str) -> list[str]:
        """Load a patch module; reverse or force its blocked transition; disable it
        while it is enabled, unload it once it is not (both refused while it is in
        use); enable it again (refused, or a replaced patch's variant); flip its
        pre_patch_ret (read by later coming modules)."""
        k = self.model.kernel
        mod = k.modules.get(name)
        if mod is None:
            texts = [f"load {name}", f"load {name}", f"load {name} pre_patch_ret=-19"]
            return texts if self.descs[name].replace else [*texts, f"load {name} replace=1"]
        patch = mod.patch
        if patch is not None and patch is k.klp_transition_patch:
            reverse = f"disable {name} --nowait" if patch.enabled else f"enable {name}"
            return [reverse, f"force {name}"]
        if patch is not None and patch.kobj and patch.enabled:
            texts = [f"disable {name}", f"unload {name}"]
        else:
            texts = [f"unload {name}", f"enable {name}"]
        value = mod.params.get("pre_patch_ret", "0")
        return [*texts, f"set {name} pre_patch_ret {0 if value == '-19' else -19}"]

    def _parked_on(self) -> tuple[str, ...]:
        """The patches of the set that replace a function a task is parked in: loading
        or disabling one is what blocks a transition."""
        keys = {task.key for task in self.model.kernel.tasks}
        return tuple(
            name
            for name, desc in self.descs.items()
            if any((obj.name, func) in keys for obj in desc.objects for func in obj.funcs)
        )

    def _blocking(self) -> tuple[str, ...]:
        """The targets whose parked tasks keep the transition from completing."""
        k = self.model.kernel
        if k.klp_transition_patch is None:
            return ()
        return tuple(
            task.target
            for task in k.tasks
            if task.patch_state != k.klp_target_state and not klp_check_stack(k, task)
        )

    # ---- taking a step ----------------------------------------------------------------

    def take(self, step: Step) -> Step | None:
        """Apply a drawn step; returns the step as it goes into the history (its
        --nowait form if the model refuses to wait), or None if the model refuses it
        (the history ends before it)."""
        for candidate in _forms(step):
            try:
                self.model.apply(len(self.steps), candidate)
            except ScenarioError:
                self._replay()
                continue
            if self.model.kernel.blocked_steps > MAX_BLOCKED_STEPS:
                self._replay()  # blocked long enough: the history ends here
                break
            self.steps.append(candidate)
            self.steered += candidate is not step
            return candidate
        self.steered += 1
        return None

    def _replay(self) -> None:
        """Back to the state after the accepted steps (a refused step left the model
        half-way through it)."""
        self.model = StepModel(self.scenario, self.series, dyndbg=False)
        for index, step in enumerate(self.steps):
            self.model.apply(index, step)


def _forms(step: Step) -> Iterable[Step]:
    """The step, then the form of it that does not wait (if it has one)."""
    yield step
    if isinstance(step, Load | Disable) and not step.nowait:
        yield dataclasses.replace(step, nowait=True)
