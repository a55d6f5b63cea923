"""Who decides whether a history shows a difference: the real kernel, or (with
`--model-only`) the model itself standing in for it.

Both compare the records of the model under test (the model, or a variant) with what
the other side did, step by step, and stop at the first difference, like
`klp-harness run`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness.fuzz.histories import History, Prediction, predict_history
from harness.model.check import PASSES, observed_check, ran_key
from harness.model.predict import predict
from harness.model.retries import retries_to_wait, with_due_lines
from harness.model.variants import Variant
from harness.outcome.compare import Mismatch, diff_records
from harness.outcome.record import StepRecord
from harness.outcome.scenario import ScenarioOutcome
from harness.scenario.step_types import Check, Step, Wait

if TYPE_CHECKING:
    from harness.runner.manager import GuestManager

MODEL_SIDE = "model"  # the `profile` of a model-only outcome
# Once a variant is told apart, one history in SAMPLE is checked against it: how
# often the histories tell it apart (its share) measures how hard the palette
# exercises what it changes.
SAMPLE = 8


@dataclass
class Verdict:
    outcome: ScenarioOutcome
    steps_run: int  # steps checked (up to and including the first difference)
    model_agrees: bool = True  # the model itself predicts what was observed (so a
    # variant's difference refutes the variant, not the model)
    remembered: bool = False  # served from memory, nothing ran
    # model-only: the model variants checked on this history, and those it tells apart
    checked: tuple[str, ...] = ()
    told_apart: tuple[str, ...] = ()

    @property
    def differs(self) -> bool:
        return not self.outcome.passed

    def shown_by(self, history: History) -> History:
        """The prefix of `history` that shows the difference: through the first step
        that differs, or through the step a crash or a hung kernel ended -- the one
        running then, which is not among the observed (those finished)."""
        mismatch = self.outcome.mismatch
        end = mismatch.index + 1 if mismatch is not None else len(self.outcome.observed) + 1
        return history.prefix(min(end, len(history.steps)))


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


def with_lines_due(records: list[StepRecord], ran: list[int | None]) -> list[StepRecord]:
    """The records with the `signaling remaining tasks` line in the step whose retries
    brought it, as the runner puts it into the model's prediction
    (harness/model/retries.py), `ran[i]` retries having run in step i."""
    return [with_due_lines(records, ran, i) for i in range(min(len(records), len(ran)))]


def assumed_retries(steps: tuple[Step, ...], records: list[StepRecord]) -> list[int | None]:
    """The retries each step runs, as few as the runner waits for: a `wait P
    retries=N` as many as bring the count since the transition (re)started to N,
    any other step only the one that completes its transition (`due.completes`).
    What the model-only judge takes the kernel to do: the kernel's own count is
    timing, which the runner observes."""
    ran: list[int | None] = []
    for index, record in enumerate(records):
        count = record.due.get("completes", 0) if record.due else 0
        step = steps[index]
        if isinstance(step, Wait) and step.retries is not None:
            count += retries_to_wait(records, [*ran, None], index, step.retries)
        ran.append(count)
    return ran


class ModelJudge:
    """`--model-only`: the model's own records stand in for the kernel's, as the runner
    would read them: the retries it would wait for (`assumed_retries`), a check's
    verdict as its exit status (`observed_check`), and what `klp-harness run`
    predicts for the history's scenario file (`predict`: a history the fuzzer
    judges is the scenario it writes).  Without a variant only that last can differ;
    the run then exercises the model (its refusals, its errors, the branches it
    reaches), and with `variants` it tells which model variants the histories tell
    apart from the model: those a kernel run of the same seed could refute."""

    side = MODEL_SIDE

    def __init__(self, series: str = "6.1", variants: Sequence[Variant] = ()) -> None:
        self.series = series
        self.variants = list(variants)
        self.told: set[Variant] = set()
        self.judged = 0

    def judge(self, prediction: Prediction) -> Verdict:
        ran = assumed_retries(prediction.history.steps, prediction.reference)
        reference = with_lines_due(as_read(prediction.history.steps, prediction.reference), ran)
        if prediction.records is prediction.reference:
            records = with_lines_due(predict(prediction.history.scenario(), self.series), ran)
        else:
            records = with_lines_due(as_read(prediction.history.steps, prediction.records), ran)
        observed, mismatch = first_difference(records[: len(reference)], reference)
        outcome = ScenarioOutcome(
            prediction.history.scenario().name, MODEL_SIDE, records, observed, mismatch
        )
        checked, told = self._tell_apart(prediction)
        return Verdict(outcome, len(observed), checked=checked, told_apart=told)

    def _tell_apart(self, prediction: Prediction) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The variants this history is checked against (each until a history tells it
        apart, then one history in SAMPLE), and those that predict it otherwise."""
        if prediction.records is not prediction.reference:
            return (), ()
        self.judged += 1
        checked, told = [], []
        for variant in self.variants:
            if variant in self.told and self.judged % SAMPLE:
                continue
            checked.append(variant.value)
            other = predict_history(prediction.history, self.series, variant)
            if not other.cut and first_difference(other.records, other.reference)[1]:
                told.append(variant.value)
                self.told.add(variant)
        return tuple(checked), tuple(told)

    def close(self) -> None:
        pass


def as_read(steps: tuple[Step, ...], records: list[StepRecord]) -> list[StepRecord]:
    """Records as the runner reads a check step: from the command's exit status."""
    read = list(records)
    for index, record in enumerate(records):
        step = steps[index]
        if isinstance(step, Check):
            status = 0 if record.ran.get(ran_key(step)) == PASSES else 1
            read[index] = dataclasses.replace(record, ran=observed_check(step, status, ""))
    return read


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
            # the signalling line where the observed retries put it, as for the model
            ran = [record.retries for record in observed]
            records = with_lines_due(prediction.records[: len(observed)], ran)
            seen, mismatch = first_difference(records, observed)
            own = outcome.mismatch
            if mismatch is not None and (own is None or mismatch.index < own.index):
                outcome = ScenarioOutcome(
                    outcome.scenario,
                    outcome.profile,
                    records,
                    seen,
                    mismatch,
                    seconds=outcome.seconds,
                    kernel_log=outcome.kernel_log,
                )
                agrees = True  # up to and including the variant's difference
        return Verdict(outcome, len(outcome.observed), agrees)

    def close(self) -> None:
        self.manager.close()
