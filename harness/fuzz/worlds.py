"""Worlds over the palette, and the steps a history over a world may take.

A world is a set of palette names in palette order (`world`): the patches a history
drew, the scenes, and what they imply (the targets its patches' objects are, the
kernel module p_dummy patches).  Its scenario holds only those (`scenario_of`), and
its step vocabulary is every step over them (`steps_of`), parsed once per world and
text (both cached: the same worlds come back in every search).  `named` goes the
other way: the world a history's steps need, so a shrunk history names nothing it
does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from harness.fuzz.palette import (
    BPF,
    DUMMY,
    NOT_LOADED,
    ORDER,
    ORIGINAL_TRACES,
    PATCH_BY_NAME,
    PATCHES,
    PINNED,
    PROCESSES,
    SCENES,
    TARGET_BY_NAME,
    TARGETS,
    TRACEABLE,
    TRIGGERS,
    WATCHED,
)
from harness.model.profiles import profile_for
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
    Trace,
    Trigger,
    Unload,
    Untrace,
    Wait,
)
from harness.scenario.steps import parse_steps
from harness.scenario.types import VMLINUX, PatchModule, Scenario, TargetModule


def allowed(name: str, series: str) -> bool:
    """Whether a world on kernel `series` may hold `name`: on a kernel that preempts
    kernel code (7.3) a transition while the CPU-bound spinner runs completes when a
    retry's timer fires on its CPU, which the model refuses (tasks.pinned_refusal), so
    its worlds would be cut at their first transition; they are not drawn there."""
    if name in (PINNED, "p_pin", "pinned"):
        return not profile_for(series).preempts_kernel_code
    return True


def world(names: Iterable[str]) -> tuple[str, ...]:
    """A world's names in palette order (the canonical form), with the targets its
    patches' objects are and the kernel module p_dummy patches."""
    chosen = {member for name in names for member in SCENES.get(name, (name,))}
    unknown = chosen - set(ORDER)
    if unknown:
        raise ValueError(f"not in the palette: {', '.join(sorted(unknown))}")
    for name in list(chosen):
        patch = PATCH_BY_NAME.get(name)
        for obj in patch.objects if patch is not None else ():
            if obj.name in TARGET_BY_NAME or obj.name == DUMMY:
                chosen.add(obj.name)
    return tuple(sorted(chosen, key=ORDER.__getitem__))


def patches_of(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(n for n in names if n in PATCH_BY_NAME)


@lru_cache(maxsize=1024)
def scenario_of(names: tuple[str, ...], name: str = "fuzz") -> Scenario:
    """The scenario (without steps) of a world: its targets, patches, groups and
    programs; two CPUs when a spinner of it is bound to CPU 1."""
    targets = tuple(t for t in TARGETS if t.name in names)
    return Scenario(
        path=Path(f"{name}.toml"),
        description="A random history over palette modules.",
        steps=(),
        targets=targets,
        patches=tuple(p for p in PATCHES if p.name in names),
        processes=tuple(g for g in PROCESSES if g.name in names),
        bpf=tuple(p for p in BPF if p.name in names),
        cpus=2 if any(t.spinner is not None and t.spinner.cpu for t in targets) else 1,
    )


def named(steps: Sequence[Step]) -> tuple[str, ...]:
    """The world a history's steps need: what they name (and what that implies)."""
    names: set[str] = set()
    for step in steps:
        match step:
            case Load(module=n) | Unload(module=n) | SetParam(module=n):
                names.add(n)
            case Enable(patch=n) | Disable(patch=n) | Force(patch=n) | Wait(patch=n):
                names.add(n)
            case Check(patch=n) | Park(target=n) | Release(target=n):
                names.add(n)
            case Start(target=n) | Stop(target=n) | Spawn(name=n) | Kill(name=n):
                names.add(n)
            case Attach(name=n) | Detach(name=n):
                names.add(n)
            case Call(object=obj) | Trace(object=obj):
                names.add(obj)
            case Trigger(watch=watch):
                names.update(WATCHED[(w.object, w.func)] for w in watch)
    if DUMMY in names:  # a module of the kernel is the scenario's through a patch object
        names.add("p_dummy")
    return world(names & set(ORDER))


def _patch_texts(patch: PatchModule) -> list[str]:
    name = patch.name
    texts = [f"disable {name}", f"unload {name}"]
    texts += [f"load {name} --nowait", f"disable {name} --nowait", f"enable {name}"]
    texts += [f"force {name}", f"wait {name}", f"wait {name} retries=2"]
    if not patch.ko:  # a generated patch's parameters
        texts += [f"load {name} replace=1", f"load {name} pre_patch_ret=-19"]
        texts += [f"set {name} pre_patch_ret -19", f"set {name} pre_patch_ret 0"]
    if patch.check:
        texts.append(f"check {name}")
    if name in TRACEABLE:
        texts.append(f"trace {name}:{TRACEABLE[name]}")
    texts += TRIGGERS.get(name, ())
    return texts


def _target_texts(target: TargetModule) -> list[str]:
    name = target.name
    if name in NOT_LOADED:
        return []
    texts = [f"unload {name}"]
    if target.blocker is not None:
        param = target.blocker.param
        texts += [f"park {name}", f"release {name}", f"load {name} {param}=Y"]
    if target.spinner is not None:
        texts += [f"start {name}", f"stop {name}", f"load {name} {target.spinner.param}=Y"]
    return texts + [f"call {name}:{func}" for func in target.funcs]


def _step_texts(scenario: Scenario) -> list[str]:
    """Every step over a world; loads first (the shrinker's favourites)."""
    texts = [f"load {p.name}" for p in scenario.patches] + [
        f"load {t.name}" for t in scenario.targets if t.name not in NOT_LOADED
    ]
    if DUMMY in scenario.real_objects():
        texts += [f"load {DUMMY}", f"unload {DUMMY}"]
    for patch in scenario.patches:
        texts += _patch_texts(patch)
    for target in scenario.targets:
        texts += _target_texts(target)
    texts += [f"{verb} {g.name}" for g in scenario.processes for verb in ("spawn", "kill")]
    texts += [f"{verb} {p.name}" for p in scenario.bpf for verb in ("attach", "detach")]
    texts += ["call vmlinux:cmdline_proc_show", "call vmlinux:meminfo_proc_show"]
    texts += ["sysctl ftrace_enabled=0", "sysctl ftrace_enabled=1"]
    targets = {t.name for t in scenario.targets}
    texts += [f"trace {t}" for t in ORIGINAL_TRACES if t.split(":")[0] in {VMLINUX, *targets}]
    return [*texts, "untrace"]


@lru_cache(maxsize=1024)
def steps_of(names: tuple[str, ...]) -> tuple[Step, ...]:
    """Every step a history over this world may take."""
    return parse_many(names, _step_texts(scenario_of(names)))


def parse_many(names: tuple[str, ...], texts: Sequence[str]) -> tuple[Step, ...]:
    """Steps parsed one by one against a world (the pairing of trace and untrace,
    attach and detach is the history's, checked as it is drawn)."""
    return tuple(_parse_one(names, text) for text in texts)


@lru_cache(maxsize=16384)
def _parse_one(names: tuple[str, ...], text: str) -> Step:
    if text == "untrace":
        return Untrace()
    scenario = scenario_of(names)
    texts = [text, "untrace"] if text.startswith("trace ") else [text]  # paired on load
    steps = parse_steps(texts, scenario.targets, scenario.patches, scenario.processes, scenario.bpf)
    return steps[0]
