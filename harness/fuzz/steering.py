"""Steps drawn from what is possible now: the model steers a history as it is drawn.

Uniform draws over every step of a world (40-130 of them) rarely line up what the
interesting paths of kernel/livepatch need: a task parked in a function, a patch of
that function loaded without waiting, then a reverse or a force while the transition
is blocked.  `Steering` keeps the model's state of the history drawn so far.  A step
is drawn in two choices: a group (a module of the world, a process group, a BPF
program, SYSTEM, or ANY), then a step from that group's menu, which offers only what
does something in the group's state: a module that is not loaded can be loaded, a
loaded patch disabled or unloaded, a patch whose transition is blocked reversed,
forced or waited for, a parked task released, a free one parked, a spinner started
or stopped, a group spawned or killed, a program attached or detached, a function
traced and untraced, a real function triggered, a check run.  A few steps the kernel
refuses (EBUSY, EAGAIN, EINVAL) stay on the menus, and ANY draws from every step:
errors are behaviour too.  While a transition is blocked its patch and whatever
blocks it (a parked work, a spinner, a sleeper) are offered once more; once it has
been blocked for MAX_BLOCKED_STEPS - 1 steps only they are (the next step ends or
turns it before the kernel would start signalling, unless a `wait retries=16` asks
for that).

Profile-aware: a menu leaves out what the profile refuses whatever the state
(7.3's `sysctl ftrace_enabled=0`, EOPNOTSUPP: the other ftrace users, kprobes, the
tracer and BPF programs, are drawn instead), and the palette leaves out what no
transition could follow there (harness/fuzz/worlds.py `allowed`).

A drawn step the model refuses (docs/model-notes.md) is steered around where a step
means the same: a load or disable that would wait for ever on a blocked transition
becomes its `--nowait` form.  Otherwise the history ends before it.  Either way it is
counted (`steered`) with its reason (`refusals`).  A step whose predicted record is a
kernel report (a known kernel bug: the guest is hurt) ends the history after it.

Everything depends only on the choices before, so the same choices give the same
history (same seed, same histories), and hypothesis' shrinker works on the choices as
usual.  Groups come in a fixed order and a group's menu depends on little more than
its own module's state, so a choice mostly keeps its meaning when a step before it is
shrunk away; lower choices mean earlier modules and simpler steps (loads first).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

from harness.errors import ScenarioError
from harness.fuzz.palette import (
    DUMMY,
    GROUP_NAMES,
    NOT_LOADED,
    ORIGINAL_TRACES,
    PROGRAM_NAMES,
    TARGET_NAMES,
    TRACEABLE,
    TRIGGERS,
)
from harness.fuzz.worlds import parse_many, patches_of, scenario_of, steps_of
from harness.model.kernel.tasks import checked_while_running
from harness.model.kernel.transition import klp_check_stack
from harness.model.predict import StepModel
from harness.scenario.step_types import (
    Attach,
    Detach,
    Disable,
    Load,
    Step,
    Trace,
    Unload,
    Untrace,
)
from harness.scenario.types import VMLINUX, PatchModule, TargetModule

# How many more times the patch in transition and what blocks it are offered while
# the transition is blocked: their steps are the rare paths.
MOVING_WEIGHT = 3
SYSTEM = "(system)"  # vmlinux calls, ftrace_enabled, the function tracer, long waits
ANY = "(any)"  # every step over the world: errors and no-ops the menus leave out

# A blocked transition is turned, ended or forced within this many steps: each pending
# step waits for a kernel retry (~1 s), and histories stay short to shrink.
MAX_BLOCKED_STEPS = 5
# retries a long wait asks for: the 16th failed attempt signals the remaining tasks
SIGNAL_RETRIES = 16
BLOCKED_TOO_LONG = "a transition blocked for more steps than the fuzzer allows"


class Steering:
    """The model's state after the steps drawn so far, and the menus of the next."""

    def __init__(self, names: tuple[str, ...], series: str) -> None:
        self.names = names
        self.series = series
        self.scenario = scenario_of(names)
        self.descs: dict[str, PatchModule] = {p.name: p for p in self.scenario.patches}
        self.targets: dict[str, TargetModule] = {t.name: t for t in self.scenario.targets}
        self.model = StepModel(self.scenario, series, dyndbg=False)
        self.steps: list[Step] = []
        self.steered = 0  # drawn steps the model refused: made --nowait or ended at
        self.refusals: list[str] = []  # the reason of each (`reason_of`)
        self.ended = False  # a kernel report ends what the model follows
        patches = patches_of(names)
        loadable = [n for n in TARGET_NAMES if n not in NOT_LOADED]
        others = [n for n in names if n in loadable or n in (DUMMY, *GROUP_NAMES)]
        others += [n for n in names if n in PROGRAM_NAMES]
        self.base = (*patches, *others, SYSTEM, ANY, *patches)

    # ---- the menus -------------------------------------------------------------------

    def groups(self) -> tuple[str, ...]:
        """What the next step is about: a module of the world, a group, a program,
        SYSTEM or ANY, always in the same order (so a choice keeps its meaning when a
        step before it is shrunk away).  While a task is parked, the patches of its
        function come MOVING_WEIGHT more times, and while a spinner that holds up
        every unpatch runs, its target; while a transition is blocked, its patch
        (twice: reverse or force) and what blocks it (release, stop, kill or unload).
        A transition blocked for MAX_BLOCKED_STEPS - 1 steps leaves only those: the
        next step must end or turn it."""
        k = self.model.kernel
        patch = k.klp_transition_patch
        if patch is None:
            rare = (*self._parked_on(), *self._holdouts(), *self._hooked())
            return self.base + rare * MOVING_WEIGHT
        moving = (patch.name, patch.name, *self._blocking())
        if k.blocked_steps >= MAX_BLOCKED_STEPS - 1:
            return moving
        forking = self._forking()  # twice: a fork during a transition is the rare path
        return self.base + (*moving, *forking, *forking) * MOVING_WEIGHT

    def menu(self, group: str) -> tuple[Step, ...]:
        """The steps of one group worth drawing now, simplest first."""
        if group == ANY:
            return steps_of(self.names)
        return parse_many(self.names, self._texts(group))

    def _texts(self, group: str) -> list[str]:
        k = self.model.kernel
        if group == SYSTEM:
            return self._system_texts()
        if group in self.descs:
            return self._patch_texts(group)
        if group == DUMMY:
            return [f"unload {DUMMY}" if DUMMY in k.modules else f"load {DUMMY}"]
        if group in GROUP_NAMES:
            return [f"kill {group}" if group in k.processes else f"spawn {group}"]
        if group in PROGRAM_NAMES:
            attached = any(p.name == group for p in k.bpf)
            return [f"detach {group}" if attached else f"attach {group}"]
        return self._target_texts(self.targets[group])

    def _system_texts(self) -> list[str]:
        k = self.model.kernel
        texts = ["call vmlinux:cmdline_proc_show", "call vmlinux:meminfo_proc_show"]
        if not k.profile.ftrace_off_refused:  # 7.3: always EOPNOTSUPP, nothing to draw
            texts.append(f"sysctl ftrace_enabled={0 if k.ftrace_enabled else 1}")
        if k.tracer is not None:
            texts.append("untrace")
        else:
            texts += [
                f"trace {t}" for t in ORIGINAL_TRACES if t.split(":")[0] in (VMLINUX, *k.modules)
            ]
        patch = k.klp_transition_patch
        if patch is not None and self._blocking():
            texts.append(f"wait {patch.name} retries={SIGNAL_RETRIES}")
        return texts

    def _target_texts(self, target: TargetModule) -> list[str]:
        k = self.model.kernel
        name = target.name
        if name in NOT_LOADED:
            return []
        if name not in k.modules:
            if target.blocker is not None:
                return [f"load {name}", f"load {name} {target.blocker.param}=Y"]
            if target.spinner is not None:
                return [f"load {name}", f"load {name} {target.spinner.param}=Y"]
            return [f"load {name}"]
        unload = [] if self._traced(name) else [f"unload {name}"]
        if target.spinner is not None:
            spinning = any(t.spinner and t.target == name for t in k.tasks)
            texts = [f"stop {name}" if spinning else f"start {name}", *unload]
        elif target.blocker is not None:
            parked = any(t.target == name and not t.spinner for t in k.tasks)
            texts = [f"release {name}" if parked else f"park {name}", *unload]
        else:
            return unload
        if name in self._blocking():
            return texts
        return texts + [f"call {name}:{func}" for func in target.funcs]

    def _patch_texts(self, name: str) -> list[str]:
        """Load a patch module; reverse, force or wait for its blocked transition;
        disable it while it is enabled, unload it once it is not (both refused while
        it is in use); enable it again (refused, or a replaced patch's variant); flip
        its pre_patch_ret (read by later coming modules); trace its replacement, run
        its check command, trigger its real function."""
        k = self.model.kernel
        mod = k.modules.get(name)
        texts = self._observing(name)
        desc = self.descs[name]
        if mod is None:
            loads = [f"load {name}", f"load {name}"]
            if not desc.ko:  # a generated patch's parameters
                loads += [f"load {name} pre_patch_ret=-19"]
                loads += [] if desc.replace else [f"load {name} replace=1"]
            return loads + texts
        patch = mod.patch
        if patch is not None and patch is k.klp_transition_patch:
            reverse = f"disable {name} --nowait" if patch.enabled else f"enable {name}"
            return [reverse, f"force {name}", f"wait {name} retries=2", *texts]
        unload = [] if self._traced(name) else [f"unload {name}"]
        if patch is not None and patch.kobj and patch.enabled:
            texts = [f"disable {name}", *unload, *texts]
        else:
            texts = [*unload, f"enable {name}", *texts]
        if desc.ko:
            return texts
        value = mod.params.get("pre_patch_ret", "0")
        return [*texts, f"set {name} pre_patch_ret {0 if value == '-19' else -19}"]

    def _observing(self, name: str) -> list[str]:
        """What observes a patch's code: its trigger, its check, a trace of its
        replacement (only while nothing else is traced)."""
        k = self.model.kernel
        texts: list[str] = []
        if name != "p_dummy" or DUMMY in k.modules:
            texts += TRIGGERS.get(name, ())
        if name in k.modules:
            if self.descs[name].check:
                texts.append(f"check {name}")
            if name in TRACEABLE and k.tracer is None:
                texts.append(f"trace {name}:{TRACEABLE[name]}")
        return texts

    def _parked_on(self) -> tuple[str, ...]:
        """The patches of the world that replace a function a task is parked or spins
        in: loading or disabling one is what blocks a transition."""
        keys = {task.key for task in self.model.kernel.tasks if not task.process}
        return tuple(
            name
            for name, desc in self.descs.items()
            if any((obj.name, func) in keys for obj in desc.objects for func in obj.funcs)
        )

    def _holdouts(self) -> tuple[str, ...]:
        """Targets whose running spinner never reports an RCU Tasks quiescent state:
        no livepatch handler can be removed until it stops."""
        return tuple(
            name
            for name, target in self.targets.items()
            if target.spinner is not None
            and not target.spinner.rcu_tasks_qs
            and any(t.spinner and t.target == name for t in self.model.kernel.tasks)
        )

    def _hooked(self) -> tuple[str, ...]:
        """The objects of loaded patches whose module hooks do more than patch: write
        klp relocations, attach or free shadow fields, resolve a sympos (a coming or
        going module is where those go wrong)."""
        k = self.model.kernel
        names: dict[str, None] = {}
        for name, desc in self.descs.items():
            if name not in k.modules:
                continue
            for obj in desc.objects:
                special = obj.klp_relocs or obj.shadow_field is not None or obj.specs
                if obj.name != VMLINUX and special and obj.name in self.base:
                    names[obj.name] = None
        return tuple(names)

    def _forking(self) -> tuple[str, ...]:
        """What starts a task during the transition: a spinner of a function the
        transition patch replaces (started, or loaded with spin=Y), a process group
        not running (a fork takes its parent's patch state: klp_copy_process)."""
        k = self.model.kernel
        patch = k.klp_transition_patch
        assert patch is not None
        keys = {(obj.name, func.old_name) for obj in patch.objects for func in obj.funcs}
        names = [
            name
            for name, target in self.targets.items()
            if target.spinner is not None
            and (name, target.spinner.func) in keys
            and not any(t.spinner and t.target == name for t in k.tasks)
        ]
        names += [g.name for g in self.scenario.processes if g.name not in k.processes]
        return tuple(names)

    def _blocking(self) -> tuple[str, ...]:
        """The targets and groups whose tasks keep the transition from completing."""
        k = self.model.kernel
        if k.klp_transition_patch is None:
            return ()
        names: dict[str, None] = {}
        for task in k.tasks:
            if task.patch_state == k.klp_target_state:
                continue
            pinned = task.pinned and not checked_while_running(k, task)
            if pinned or task.unreliable or not klp_check_stack(k, task):
                names[task.target] = None
        return tuple(names)

    def _traced(self, module: str) -> bool:
        """Whether a function of `module` is traced (it stays loaded until untraced)."""
        tracer = self.model.kernel.tracer
        return tracer is not None and module in (tracer.key[0], tracer.impl)

    @property
    def tracing(self) -> bool:
        return self.model.kernel.tracer is not None

    # ---- taking a step ---------------------------------------------------------------

    def take(self, step: Step) -> Step | None:
        """Apply a drawn step; returns the step as it goes into the history (its
        --nowait form if the model refuses to wait), or None if the model refuses it
        (the history ends before it)."""
        if self.ended:
            return None
        why = pairing_refusal(self.steps, step)
        for candidate in _forms(step) if why is None else ():
            try:
                record = self.model.step(len(self.steps), candidate)
            except ScenarioError as exc:
                why = exc.message
                self._replay()
                continue
            if self.model.kernel.blocked_steps > MAX_BLOCKED_STEPS and not _long_wait(candidate):
                why = BLOCKED_TOO_LONG
                self._replay()  # blocked long enough: the history ends here
                break
            self.steps.append(candidate)
            self.ended = bool(record.report)
            if candidate is not step:
                self.steered += 1
                self.refusals.append(reason_of(why or ""))
            return candidate
        self.steered += 1
        self.refusals.append(reason_of(why or ""))
        return None

    def close(self) -> None:
        """End the history as a scenario file must: a trace still running is
        untraced (the loader pairs them; after a kernel report it is not run)."""
        if not self.tracing:
            return
        if self.ended:
            self.steps.append(Untrace())
        else:
            self.take(Untrace())

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


def _long_wait(step: Step) -> bool:
    return getattr(step, "retries", None) == SIGNAL_RETRIES


def pairing_refusal(before: Sequence[Step], step: Step) -> str | None:
    """What a scenario file refuses about a step after `before` (the loader's
    pairing of trace and untrace, attach and detach: harness/scenario/traces.py and
    bpf.py), or None."""
    traced: Trace | None = None
    attached: set[str] = set()
    for earlier in before:
        if isinstance(earlier, Trace):
            traced = earlier
        elif isinstance(earlier, Untrace):
            traced = None
        elif isinstance(earlier, Attach):
            attached.add(earlier.name)
        elif isinstance(earlier, Detach):
            attached.discard(earlier.name)
    if isinstance(step, Trace) and traced is not None:
        return "a trace while another runs"
    if isinstance(step, Untrace) and traced is None:
        return "an untrace without a trace"
    if isinstance(step, Unload) and traced is not None and traced.object == step.module:
        return "an unload of the traced module"
    if isinstance(step, Attach) and step.name in attached:
        return "an attach of an attached program"
    if isinstance(step, Detach) and step.name not in attached:
        return "a detach of a program not attached"
    return None


def closed(steps: Sequence[Step]) -> tuple[Step, ...]:
    """`steps`, with an `untrace` after them if a trace is still running."""
    traced = False
    for step in steps:
        if isinstance(step, Trace | Untrace):
            traced = isinstance(step, Trace)
    return (*steps, Untrace()) if traced else tuple(steps)


_STEP_TEXT = re.compile(r"^`[^`]*`:?\s*|^check \w+:\s*")
_FUNC = re.compile(r"\b\w+:\w+(,\d+)?")
_NAME = re.compile(r"\b(p|t|kp)_\w+|\bkretp\b|\bdummy\b|\bgetpid\b(?!\()|\bsleeper\b")
_NUMBER = re.compile(r"\b0x[0-9a-f]+\b|\b\d+(st|nd|rd|th)?\b")


def reason_of(message: str) -> str:
    """A refusal's reason without its particulars (step text, names, numbers), so
    refusals can be counted by reason: "would wait for ever", "removes an ftrace
    handler", ...  The first clause of the model's message."""
    text = _STEP_TEXT.sub("", message.strip())
    text = _FUNC.sub("F", text)
    text = _NAME.sub("M", text)
    text = _NUMBER.sub("N", text)
    clause = re.split(r": | \(|; ", text, maxsplit=1)[0].strip(" .,")
    return clause[:90] or "refused"
