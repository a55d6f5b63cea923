"""What running one scenario on one profile gave: the prediction, the observation,
the first difference or the error that ended it.  The runner fills it, the reports
render it, fuzzing judges it: it sits below all three."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from harness.outcome.compare import Mismatch
from harness.outcome.record import StepRecord

Status = Literal["pass", "difference", "refused", "skipped", "host-failure"]


@dataclass
class ScenarioOutcome:
    scenario: str
    profile: str
    predicted: list[StepRecord]
    observed: list[StepRecord] = field(default_factory=list)
    mismatch: Mismatch | None = None
    error: str | None = None  # a crash or harness failure, one line + excerpt
    diagnostics: list[str] = field(default_factory=list)
    seconds: float = 0.0
    kernel_log: list[str] = field(default_factory=list)
    taints: list[int] = field(default_factory=list)  # the kernel's taint after each step
    # Not run: the model refused the scenario on this profile (the reason), or it was
    # never started (the reason: not meant for the profile, an earlier failure with
    # --exitfirst); and whether `error` is the host's or the harness's failure (a
    # guest that would not boot, a starved host) rather than the kernel's (a crash).
    refused: str | None = None
    skipped: str | None = None
    host_failure: bool = False
    # The options of the run beyond the kernel and the scenario (guest options, model
    # variant, --fast-guest): what a command that runs it again needs.
    run_options: list[str] = field(default_factory=list)

    @property
    def status(self) -> Status:
        if self.skipped is not None:
            return "skipped"
        if self.refused is not None:
            return "refused"
        if self.error is not None and self.host_failure:
            return "host-failure"
        if (
            self.error is None
            and self.mismatch is None
            and (len(self.observed) == len(self.predicted))
        ):
            return "pass"
        return "difference"

    @property
    def passed(self) -> bool:
        return self.status == "pass"
