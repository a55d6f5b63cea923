"""What a scenario needs to leave the harness, and why one cannot.

An exported test observes what a shell script can: the kernel log, livepatch's sysfs
files, the exit status of modprobe/insmod, rmmod and sysfs writes, and what a read of
a /proc file of a test module (or /proc/cmdline, /proc/meminfo) prints.  A scenario
that needs more is refused with one reason per thing it needs:

* the harness's own observers: which implementation ran, counted by call counters
  and kprobes (`trigger`), the kernel's retries counted through a trace instance
  (`wait ... retries=N`), the function tracer's verdict (`trace`/`untrace`), a
  patch's check command (`check`);
* actors whose state only the harness reads: spinner threads and user processes
  (their `/proc/<pid>/patch_state`, started and stopped by steps), two CPUs;
* modules that are not generated from the scenario: module files (`ko`, samples),
  modules of the kernel as patch objects;
* generated code that is the harness's instrumentation or needs its build: the
  counting default replacement of a real function (no body), shadow fields on the
  target's own structures, shadow-variable scripts (not in the export templates);
* for a kselftest, what needs a program of the reproducer's own: BPF programs (its
  loader, images/klp-bpf.c) and klp relocations (an ELF rewrite after the build,
  images/klp-rela.c, as harness/modules/klprela.py does it).

Refusals are also what the model refuses (a ScenarioError of the prediction) and a
profile the scenario is not meant for (`kernels = [...]`).
"""

from __future__ import annotations

from enum import Enum

from harness.errors import UsageError
from harness.scenario.step_types import (
    Check,
    Kill,
    Spawn,
    Start,
    Step,
    Stop,
    Trace,
    Trigger,
    Untrace,
    Wait,
)
from harness.scenario.types import VMLINUX, VMLINUX_FUNCS, Scenario


class Kind(Enum):
    KSELFTEST = "kselftest"
    REPRO = "repro"


class Refused(UsageError):
    """A scenario cannot be exported: `reasons` say why, one a line."""

    def __init__(self, scenario: Scenario, reasons: list[str]) -> None:
        self.scenario = scenario
        self.reasons = reasons
        super().__init__(f"{scenario.path}: not exportable: {'; '.join(reasons)}")


def _step_reason(step: Step) -> str | None:
    match step:
        case Trigger():
            return "`trigger` steps: which implementation ran is counted by the harness's probes"
        case Wait(retries=n) if n is not None:
            return "`wait ... retries=N`: the kernel's retries are counted by a trace instance"
        case Trace() | Untrace():
            return "`trace`/`untrace` steps: the function tracer's verdict is the harness's line"
        case Check():
            return "`check` steps: kpatch-style check commands are not exported"
        case Start() | Stop() | Spawn() | Kill():
            return "actors (spinner threads, user processes) are the harness's to start and observe"
    return None


def refusals(scenario: Scenario, kind: Kind) -> list[str]:
    """Why `scenario` cannot be exported as `kind` (none: it can)."""
    reasons: list[str] = []
    if scenario.cpus != 1:
        reasons.append(f"cpus = {scenario.cpus}: a test cannot choose the machine's CPUs")
    if scenario.processes:
        reasons.append("[[processes]] groups are actors the harness starts and observes")
    if scenario.bpf and kind is Kind.KSELFTEST:
        reasons.append("[[bpf]] programs need a loader the selftests do not have")
    for module in scenario.external:
        reasons.append(f"{module.name}: a module file (`ko`), not generated from the scenario")
    for name in scenario.real_objects():
        reasons.append(f"{name}: a module of the kernel as a patch object")
    for target in scenario.targets:
        if target.spinner is not None:
            reasons.append(f"{target.name}: a spinner thread (an actor the harness observes)")
        if target.shadow:
            reasons.append(f"{target.name}: shadow-variable scripts are not exported")
    for patch in scenario.patches:
        if patch.shadow:
            reasons.append(f"{patch.name}: shadow-variable scripts are not exported")
        if patch.check:
            reasons.append(f"{patch.name}: a check command is not exported")
        for obj in patch.objects:
            where = f"{patch.name}:{obj.name}"
            if obj.klp_relocs and kind is Kind.KSELFTEST:
                reasons.append(f"{where}: klp relocations are an ELF rewrite after the build")
            if obj.shadow_field is not None:
                reasons.append(f"{where}: a shadow field on the target's own structure")
            if obj.name != VMLINUX:
                continue
            for func in obj.funcs:
                if func not in VMLINUX_FUNCS and obj.spec(func).body is None:
                    reasons.append(
                        f"{where}:{func}: the default replacement of a real function is the "
                        "harness's counting trampoline (give the func a body)"
                    )
    for step in scenario.steps:
        reason = _step_reason(step)
        if reason is not None and reason not in reasons:
            reasons.append(reason)
    return reasons


def check_exportable(scenario: Scenario, kind: Kind, profile_name: str) -> None:
    """Raise `Refused` unless `scenario` can be exported as `kind` for the profile."""
    reasons = refusals(scenario, kind)
    if scenario.kernels and profile_name not in scenario.kernels:
        reasons.insert(0, f"not meant for {profile_name} (kernels = {list(scenario.kernels)})")
    if reasons:
        raise Refused(scenario, reasons)
