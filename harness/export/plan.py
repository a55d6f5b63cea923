"""A scenario's steps with what the model expects of each, in the terms an exported
script checks: the operation's errno, the kernel log lines, the livepatch sysfs
files once the step settled, and what a read of each patched function prints.

The model is stepped here (not through `predict`) so that the state before a step
can be asked what the step means for a script: a `load` of a module that is loaded
already is one that modprobe leaves alone, and the patch directories that exist
before a step are the ones a `disable` may remove.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import ScenarioError
from harness.export.expect import Expect, expected_model
from harness.export.exportable import Refused
from harness.outcome.record import StepRecord
from harness.scenario.step_types import Call, Load, Step
from harness.scenario.types import VMLINUX, VMLINUX_FUNCS, Scenario

# What a read of a function prints: a replacement's line, `<func>: orig` for a
# generated target's original (kmod_templates/export/target.c.j2).
PATCHED_LINE = "{patch}: this has been live patched"

# Lines the harness's runner (and an exported script) writes to the kernel log
# itself, before or after the operation: the model predicts them with the kernel's.
USERLAND_PREFIXES = (
    "% ",
    "modprobe: ERROR: ",
    "livepatch: kernel.ftrace_enabled = ",
    'livepatch: sysctl: setting key "kernel.ftrace_enabled": ',
)


@dataclass(frozen=True)
class PlannedStep:
    index: int
    step: Step
    record: StepRecord
    loaded_before: bool  # a `load` of a module already loaded: modprobe leaves it alone

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def failed(self) -> bool:
        return self.record.errno != 0

    def patch_dirs(self) -> dict[str, str]:
        """Patch directory -> its `transition` value, after the step settled."""
        return {
            path.split("/", 1)[0]: value
            for path, value in self.record.sysfs.items()
            if path.endswith("/transition") and path.count("/") == 1
        }

    def sysfs_values(self) -> dict[str, str]:
        """Readable sysfs files and their values (`force` is write-only)."""
        return {p: v for p, v in self.record.sysfs.items() if not p.endswith("/force")}

    def kernel_lines(self) -> list[str]:
        """The predicted log without the lines a script writes itself (markers,
        modprobe's error, sysctl's result, a `call`'s grep)."""
        lines = [line for line in self.record.log if not line.startswith(USERLAND_PREFIXES)]
        if isinstance(self.step, Call):
            lines = [line for line in lines if not line.endswith(": this has been live patched")]
        return lines

    def called(self) -> str:
        """For a `call`: the implementation it runs, a patch name or `orig`."""
        for line in self.record.log:
            patch, sep, rest = line.partition(": ")
            if sep and rest == "this has been live patched":
                return patch
        return "orig"


def read_file(obj: str, func: str) -> str:
    """The file whose read calls `obj:func`: /proc/cmdline or /proc/meminfo, or
    /proc/<target>/<func> of an exported target module."""
    if obj == VMLINUX:
        return VMLINUX_FUNCS[func]
    return f"/proc/{obj}/{func}"


def expected_read(obj: str, func: str, impl: str) -> str | None:
    """The first line a read prints when `impl` runs; None for a vmlinux original
    (the machine's own /proc/cmdline, meminfo)."""
    if impl != "orig":
        return PATCHED_LINE.format(patch=impl)
    return None if obj == VMLINUX else f"{func}: orig"


def plan(
    scenario: Scenario, series: str, expect: Expect, *, dyndbg: bool = True
) -> list[PlannedStep]:
    """Every step with its expectation, up to a step whose kernel report (a known
    bug, when `as-is`) ends what the model follows.  A step the model refuses makes
    the scenario unexportable: `Refused`."""
    try:
        model = expected_model(scenario, series, expect, dyndbg=dyndbg)
        steps: list[PlannedStep] = []
        for index, step in enumerate(scenario.steps):
            loaded = isinstance(step, Load) and step.module in model.kernel.modules
            record = model.step(index, step)
            steps.append(PlannedStep(index, step, record, loaded))
            if record.report:
                break
    except ScenarioError as exc:
        raise Refused(scenario, [f"the model refuses it: {exc.where}: {exc.message}"]) from None
    return steps
