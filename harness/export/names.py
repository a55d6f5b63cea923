"""Module names of exported tests.

Upstream's check_result keeps only kernel log lines containing `livepatch:` or
`test_klp`, so every module of an exported kselftest is named `test_klp_<name>`
(its module-prefixed lines and the script's `% modprobe`/`% rmmod` markers then
survive the filter).  The scenario is renamed before the model predicts it, so the
expected transcript names the modules the script loads.  Names stay below the
kernel's MODULE_NAME_LEN, and one directory of exported tests never holds two
different modules of one name, nor one of upstream's own test modules' names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from harness.errors import UsageError
from harness.scenario.step_types import (
    Call,
    Check,
    Disable,
    Enable,
    Force,
    Load,
    Park,
    Release,
    SetParam,
    Start,
    Step,
    Stop,
    Trace,
    Unload,
    Wait,
)
from harness.scenario.types import Module, PatchObject, Scenario

PREFIX = "test_klp_"
MODULE_NAME_LEN = 56  # include/linux/module.h: MODULE_NAME_LEN, with the NUL
# tools/testing/selftests/livepatch/test_modules (7.3) and lib/livepatch (6.1)
UPSTREAM_MODULES = frozenset(
    {
        "test_klp_atomic_replace",
        "test_klp_callbacks_busy",
        "test_klp_callbacks_demo",
        "test_klp_callbacks_demo2",
        "test_klp_callbacks_mod",
        "test_klp_kprobe",
        "test_klp_livepatch",
        "test_klp_mod_patch",
        "test_klp_mod_target",
        "test_klp_shadow_vars",
        "test_klp_state",
        "test_klp_state2",
        "test_klp_state3",
        "test_klp_syscall",
    }
)


def upstream_name(name: str) -> str:
    """`klp_target` -> `test_klp_target`, `c01_p1` -> `test_klp_c01_p1`."""
    stem = name.removeprefix(PREFIX).removeprefix("klp_")
    return PREFIX + stem


class Namer:
    """Hands out module names for the scenarios of one export: a module keeps its
    upstream-style name unless another (different) module of the export or one of
    upstream's own has it, then it gets the scenario's tag as a suffix."""

    def __init__(self) -> None:
        self.taken: dict[str, Module] = {}

    def names(self, scenario: Scenario, tag: str) -> dict[str, str]:
        mapping: dict[str, str] = {}
        for module in scenario.modules:
            wanted = upstream_name(module.name)
            same = [n for n, m in self.taken.items() if m == module and n.startswith(wanted)]
            if same:  # the same module in another scenario: one file
                mapping[module.name] = same[0]
                continue
            if wanted in UPSTREAM_MODULES or wanted in self.taken:
                wanted = f"{wanted}_{tag}"
            if len(wanted) >= MODULE_NAME_LEN:
                raise UsageError(f"{scenario.path}: module name {wanted} is too long")
            if wanted in self.taken:
                raise UsageError(f"{scenario.path}: module name {wanted} is taken twice")
            self.taken[wanted] = module
            mapping[module.name] = wanted
        return mapping


def renamed(scenario: Scenario, mapping: dict[str, str]) -> Scenario:
    """`scenario` with its modules renamed (targets, patches, the objects naming a
    target, and every step)."""

    def new(name: str) -> str:
        return mapping.get(name, name)

    def obj(o: PatchObject) -> PatchObject:
        return dataclasses.replace(o, name=new(o.name))

    targets = tuple(dataclasses.replace(t, name=new(t.name)) for t in scenario.targets)
    patches = tuple(
        dataclasses.replace(p, name=new(p.name), objects=tuple(obj(o) for o in p.objects))
        for p in scenario.patches
    )
    return dataclasses.replace(
        scenario,
        targets=targets,
        patches=patches,
        steps=tuple(_step(step, new) for step in scenario.steps),
    )


def _step(step: Step, new: Callable[[str], str]) -> Step:
    match step:
        case Load() | Unload() | SetParam():
            return dataclasses.replace(step, module=new(step.module))
        case Enable() | Disable() | Force() | Wait() | Check():
            return dataclasses.replace(step, patch=new(step.patch))
        case Park() | Release() | Start() | Stop():
            return dataclasses.replace(step, target=new(step.target))
        case Call() | Trace():
            return dataclasses.replace(step, object=new(step.object))
    return step
