"""What an exported test expects: the model's prediction for a kernel series, as the
kernel is (`as-is`) or with its known bugs fixed (`fixed`).

A known bug is a `ModelProfile` field whose value on some profile is the bug
(harness/model/profiles.py cites each one's source lines).  `fixed` predicts with
every such field set to what a kernel without the bug does, so a test exported with
it fails on exactly the kernels that have the bug and passes on the others; `as-is`
predicts what the profile's kernel does, bugs included.

Fields that differ between the profiles without either side being a bug (sysfs
attributes added, a changed message, Debian's preemption model) are left alone, and
so is `klp_cond_resched`: 6.1 lacks it (a bug, tests/scenarios/bugs/03) but 7.3 lacks
it too by design (it switches in __schedule()), and export refuses the spinner
threads that could observe it anyway.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

from harness.model.predict import StepModel
from harness.model.profiles import ModelProfile, profile_for
from harness.scenario.types import Scenario


class Expect(Enum):
    AS_IS = "as-is"
    FIXED = "fixed"


# ModelProfile field -> (its value on a kernel without the bug, the bug in a phrase)
KNOWN_BUGS: dict[str, tuple[bool, str]] = {
    "kprobe_arm_error_lost": (
        False,
        "register_kprobe() returns 0 for a kprobe it did not arm (7.3 kprobes.c:1709-1720)",
    ),
    "bpf_modify_clears_ops_func": (
        False,
        "a BPF trampoline's ftrace ops left without func after fexit is added to a "
        "livepatched function (6.1.192 trampoline.c:494-507), WARN at ftrace.c:7660",
    ),
    "klp_relocs_cleared": (
        True,
        "klp relocations not cleared when their module goes (fixed in v6.3)",
    ),
    "bpf_frames_reliable": (
        True,
        "a BPF trampoline's frame makes a sleeping task's stack unreliable",
    ),
    "kprobe_disarm_wrong_ops": (
        False,
        "a kprobe that joined an ftrace-based aggregate probe is disarmed through the "
        "ops it was never armed on: WARN `Failed to disarm kprobe-ftrace` (finding 5)",
    ),
    "failed_coming_keeps_relocs": (
        False,
        "a patch whose coming fails (its pre_patch callback) keeps its klp relocations "
        "written: the module's next load is refused with ENOEXEC (finding 6)",
    ),
}


def expected_profile(series: str, expect: Expect) -> ModelProfile:
    """The model profile of `series`, with its known bugs fixed for `Expect.FIXED`."""
    profile = profile_for(series)
    if expect is Expect.AS_IS:
        return profile
    fields = {f.name for f in dataclasses.fields(profile)}
    fixed: dict[str, Any] = {
        name: value for name, (value, _what) in KNOWN_BUGS.items() if name in fields
    }
    return dataclasses.replace(profile, **fixed)


def bugs_of(series: str) -> list[str]:
    """The known bugs the model gives `series`, as phrases (what `fixed` turns off)."""
    profile = profile_for(series)
    return [
        what
        for name, (value, what) in KNOWN_BUGS.items()
        if hasattr(profile, name) and getattr(profile, name) != value
    ]


def expected_model(
    scenario: Scenario, series: str, expect: Expect, *, dyndbg: bool = True
) -> StepModel:
    """The model that predicts the test's expectation, one step at a time.  The
    profile replaces the series' own before the first step: the kernel model reads
    it only while steps run."""
    model = StepModel(scenario, series, dyndbg=dyndbg)
    profile = expected_profile(series, expect)
    model.kernel.profile = profile
    model.profile = profile
    return model
