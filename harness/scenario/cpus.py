"""`cpus = N`: the guest's CPU count, and the CPU a spinner is pinned to.

Guests have one CPU by default: a completion attempt then runs only while every
other task is off the CPU, so each is stack-checked (harness/model/kernel/tasks.py).  Two
CPUs let a kernel thread be *running* when an attempt looks at it, which is what
"livepatch,sched: Add livepatch task switching to cond_resched()" (v6.4) is about.
A spinner pinned to CPU 1 (`spinner = { ..., cpu = 1 }`) has that CPU to itself:
the runner's shell and the transition's retry work run on CPU 0."""

from __future__ import annotations

from collections.abc import Sequence

from harness.errors import ScenarioError
from harness.scenario.checks import check_int
from harness.scenario.types import TargetModule

DEFAULT_CPUS = 1
MAX_CPUS = 2  # what the bugs need; every vCPU costs a TCG thread on a shared machine


def parse_cpus(value: object) -> int:
    """The `cpus` key: 1..MAX_CPUS."""
    return check_int(value, "cpus", DEFAULT_CPUS, MAX_CPUS, "a CPU count")


def parse_spinner_cpu(value: object, where: str) -> int:
    """A spinner's `cpu`: not CPU 0, which the runner shares with everything else."""
    return check_int(value, where, 1, MAX_CPUS - 1, "a CPU number")


def check_spinner_cpus(targets: Sequence[TargetModule], cpus: int) -> None:
    """Every pinned spinner's CPU exists in the guest."""
    for i, target in enumerate(targets):
        spinner = target.spinner
        if spinner is not None and spinner.cpu is not None and spinner.cpu >= cpus:
            raise ScenarioError(
                f"target[{i}].spinner.cpu",
                f"CPU {spinner.cpu} needs cpus = {spinner.cpu + 1} (the guest has {cpus})",
            )
