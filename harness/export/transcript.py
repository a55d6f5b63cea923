"""The expected dmesg transcript of an exported kselftest: the model's predicted log
lines, in the words of the profile's functions.sh and filtered as its check_result
filters the kernel's.

The model predicts the runner's markers as kmod's modprobe writes them (`% modprobe
M`, `modprobe: ERROR: could not insert 'M': ...`).  Upstream's functions.sh loads
modules that way up to 6.7 (lib/livepatch, installed under /lib/modules); since 6.8
it insmods test_modules/M.ko and logs `% insmod test_modules/M.ko` and insmod's
error, whose wording for some errnos is its own (kmod's tools/insmod.c
mod_strerror; Debian 12's kmod 30).  insmod cannot leave a loaded module alone as
modprobe does: such a step checks that the module is loaded and logs nothing.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass

from harness.export.plan import PlannedStep
from harness.scenario.step_types import Load

INSMOD_MESSAGES = {
    errno.ENOEXEC: "Invalid module format",
    errno.ENOENT: "Unknown symbol in module",
    errno.ESRCH: "Module has wrong symbol version",
    errno.EINVAL: "Invalid parameters",
}
INSMOD_SINCE = (6, 8)  # test_modules/ and insmod in functions.sh


@dataclass(frozen=True)
class Style:
    """How the profile's functions.sh loads a module."""

    insmod: bool

    @classmethod
    def for_series(cls, series: str) -> Style:
        match = re.match(r"(\d+)\.(\d+)", series)
        version = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        return cls(insmod=version >= INSMOD_SINCE)

    def load_marker(self, step: Load) -> str:
        params = [f"{k}={v}" for k, v in step.params]
        if self.insmod:
            return " ".join(["% insmod", f"test_modules/{step.module}.ko", *params])
        return " ".join(["% modprobe", step.module, *params])

    def load_error(self, module: str, errno_value: int) -> str:
        """What load_failing_mod logs for a load that fails with `errno_value`."""
        if self.insmod:
            text = INSMOD_MESSAGES.get(errno_value) or os.strerror(errno_value)
            return f"insmod: ERROR: could not insert module test_modules/{module}.ko: {text}"
        return ""  # the model's own line is modprobe's


def upstream_keeps(line: str) -> bool:
    """check_result's filter: `livepatch:` or `test_klp`, without taint lines."""
    if "tainting kernel" in line or "taints kernel" in line:
        return False
    return "livepatch:" in line or "test_klp" in line


def step_lines(step: PlannedStep, style: Style) -> list[str]:
    """The lines of one step as the exported script's transcript shows them."""
    lines: list[str] = []
    for line in step.record.log:
        if isinstance(step.step, Load) and line.startswith("% modprobe "):
            if step.loaded_before and style.insmod:
                continue  # the script checks the module is there and logs nothing
            line = style.load_marker(step.step)
        elif isinstance(step.step, Load) and line.startswith("modprobe: ERROR: "):
            line = style.load_error(step.step.module, step.record.errno) or line
        if upstream_keeps(line):
            lines.append(line)
    return lines


def transcript(steps: list[PlannedStep], style: Style) -> list[str]:
    """Every line the steps before a predicted kernel report log."""
    lines: list[str] = []
    for step in steps:
        if step.record.report:
            break
        lines += step_lines(step, style)
    return lines
