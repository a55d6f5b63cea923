"""Who decides whether a history shows a difference: the real kernel, or (with
`--model-only`) the model itself standing in for it.

Both compare the records of the model under test (the model, or a variant) with what
the other side did, step by step, and stop at the first difference, like
`klp-harness run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness.fuzz.histories import Prediction
from harness.outcome.compare import Mismatch, diff_records
from harness.outcome.record import StepRecord
from harness.outcome.scenario import ScenarioOutcome

if TYPE_CHECKING:
    from harness.runner.manager import GuestManager

MODEL_SIDE = "model"  # the `profile` of a model-only outcome


@dataclass
class Verdict:
    outcome: ScenarioOutcome
    steps_run: int  # steps checked (up to and including the first difference)
    model_agrees: bool = True  # the model itself predicts what was observed (so a
    # variant's difference refutes the variant, not the model)
    remembered: bool = False  # served from memory, nothing ran

    @property
    def differs(self) -> bool:
        return not self.outcome.passed


class Judge(Protocol):
    side: str  # what the predictions are compared with: a profile name or MODEL_SIDE

    def judge(self, prediction: Prediction) -> Verdict: ...

    def close(self) -> None: ...


def first_difference(
    predicted: list[StepRecord], observed: list[StepRecord]
) -> tuple[list[StepRecord], Mismatch | None]:
    """The observed records up to the first that differs, and that difference."""
    for index, (want, got) in enumerate(zip(predicted, observed, strict=True)):
        diffs = diff_records(want, got)
        if diffs:
            return observed[: index + 1], Mismatch(index, got.step, tuple(diffs))
    return observed, None


class ModelJudge:
    """`--model-only`: the model's own records stand in for the kernel's.  Without a
    variant nothing can differ; the run then exercises the model (its refusals, its
    errors, the branches it reaches)."""

    side = MODEL_SIDE

    def judge(self, prediction: Prediction) -> Verdict:
        observed, mismatch = first_difference(prediction.records, prediction.reference)
        outcome = ScenarioOutcome(
            prediction.history.scenario().name,
            MODEL_SIDE,
            prediction.records,
            observed,
            mismatch,
        )
        return Verdict(outcome, len(observed))

    def close(self) -> None:
        pass


class KernelJudge:
    """Runs each history on a fresh guest of `manager`'s profile (resumed from its
    snapshot, the whole palette installed, the next guest made meanwhile)."""

    def __init__(self, manager: GuestManager, modules: dict[str, Path]) -> None:
        self.manager = manager
        self.modules = modules
        self.side = manager.profile.name

    def judge(self, prediction: Prediction, artifacts: Path | None = None) -> Verdict:
        """Run the history as the model predicts it (the runner waits for the settled
        state the model predicts: a variant's wrong sysfs would cost the 60 s settle
        timeout on every step it gets wrong), then compare the variant's records with
        what was observed.  The first difference of either counts; the model's own is
        a model (or kernel) difference, said by `model_agrees`."""
        outcome = self.manager.run_scenario(
            prediction.history.scenario(),
            prediction.reference,
            self.modules,
            artifacts,
            then=self.modules,
        )
        observed = outcome.observed
        agrees = outcome.passed
        if prediction.records is not prediction.reference and outcome.error is None:
            seen, mismatch = first_difference(prediction.records[: len(observed)], observed)
            own = outcome.mismatch
            if mismatch is not None and (own is None or mismatch.index < own.index):
                outcome = ScenarioOutcome(
                    outcome.scenario,
                    outcome.profile,
                    prediction.records,
                    seen,
                    mismatch,
                    seconds=outcome.seconds,
                    kernel_log=outcome.kernel_log,
                )
                agrees = True  # up to and including the variant's difference
        return Verdict(outcome, len(outcome.observed), agrees)

    def close(self) -> None:
        self.manager.close()
