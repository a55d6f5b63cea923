"""What running one scenario on one profile gave: the prediction, the observation,
the first difference or the error that ended it.  The runner fills it, the reports
render it, fuzzing judges it: it sits below all three."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.outcome.compare import Mismatch
from harness.outcome.record import StepRecord


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

    @property
    def passed(self) -> bool:
        return (
            self.error is None
            and self.mismatch is None
            and (len(self.observed) == len(self.predicted))
        )
