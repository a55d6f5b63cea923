"""The hypothesis loop: generate histories until the budget is spent or one shows a
difference, then let hypothesis shrink it -- on the judge, i.e. on the real kernel.

Same seed, same histories: hypothesis runs derandomised from the seed with no
example database, so what it generates depends only on the seed and on the verdicts
(which the kernel makes deterministic on the histories the model accepts).

The budget is wall time.  When it is spent the test function raises `Stop`, a
BaseException hypothesis does not take for a failure.  Shrinking has a budget of its
own (`shrink_seconds`); if it runs out, the smallest difference seen so far is kept.
Shrinking a variant's difference runs a candidate on the judge only where the variant
and the model predict differently somewhere: elsewhere the kernel could show only a
model difference, another failure than the one being shrunk.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed

from harness.fuzz.config import SearchConfig
from harness.fuzz.findings import Signature, signature_of
from harness.fuzz.histories import (
    History,
    Prediction,
    histories,
    predict_history,
    refusal_reasons,
    uniform_histories,
)
from harness.fuzz.judge import Judge, ModelJudge, Verdict
from harness.fuzz.palette import FOCUS
from harness.model.variants import parse_variant


class Stop(BaseException):
    """The budget is spent (or another worker found a difference): end the search."""


@dataclass
class Found:
    """A history that shows a difference, shrunk as far as the budget allowed."""

    prediction: Prediction
    verdict: Verdict
    first_verdict: Verdict  # the difference as first met, before shrinking
    found_after: int  # histories run before the first difference
    found_seconds: float  # from the start of the search to the first difference
    found_at: float  # time.monotonic() then
    shrink_runs: int = 0
    shrink_seconds: float = 0.0
    shrunk: bool = True  # hypothesis finished shrinking (False: the budget ended it)


class Memory:
    """Verdicts by history, and the histories that showed a difference, by prefix: a
    history judged once is not judged again, and one whose prefix showed a difference
    shows it again without a guest (the kernel is deterministic on the histories the
    model accepts).  Shrinking tries many such histories; hypothesis' last replay of
    the minimal one is answered from here too, after the shrink budget has ended."""

    def __init__(self) -> None:
        self.seen: dict[History, Verdict] = {}
        self.failing: dict[History, Verdict] = {}

    def recall(self, history: History) -> Verdict | None:
        verdict = self.seen.get(history)
        if verdict is not None:
            return Verdict(verdict.outcome, verdict.steps_run, verdict.model_agrees, True)
        for length in range(1, len(history.steps) + 1):
            known = self.failing.get(history.prefix(length))
            if known is not None:
                return Verdict(known.outcome, known.steps_run, known.model_agrees, True)
        return None

    def keep(self, history: History, verdict: Verdict) -> None:
        self.seen[history] = verdict
        if verdict.differs and verdict.outcome.mismatch is not None:
            self.failing[history.prefix(verdict.outcome.mismatch.index + 1)] = verdict


class _Difference(Exception):
    def __init__(self, prediction: Prediction, verdict: Verdict) -> None:
        super().__init__(prediction.history.digest)
        self.prediction = prediction
        self.verdict = verdict


class HostFailures(Exception):
    """The host failed the guests several times in a row: the search cannot go on."""


# Host failures in a row (a guest that would not start, a full disk) that end a search.
MAX_HOST_FAILURES = 3


@dataclass
class Stats:
    histories: int = 0  # judged, distinct (repeats of a history are not counted)
    steps: int = 0  # steps checked by the judge
    refusals: int = 0  # histories cut at a refused step
    steered: int = 0  # histories drawn around a step the model refused
    refused: Counter[str] = field(default_factory=Counter)  # refusals by reason
    model_errors: list[str] = field(default_factory=list)  # the model failed (a bug)
    differences: int = 0  # new ones (a signature not met before), shrunk
    duplicates: int = 0  # differences whose signature was met before: not shrunk again
    host_failures: int = 0  # histories the host failed to run (not judged)
    shrink_runs: int = 0  # histories judged while shrinking
    shrink_skipped: int = 0  # shrink candidates the variant predicts as the model does
    told_apart: dict[str, int] = field(default_factory=dict)  # variant -> histories until
    checked: Counter[str] = field(default_factory=Counter)  # variant -> histories checked
    told: Counter[str] = field(default_factory=Counter)  # variant -> histories telling it
    started: float = field(default_factory=time.monotonic)

    @property
    def refusal_rate(self) -> float:
        return self.refusals / self.histories if self.histories else 0.0

    def line(self, label: str = "") -> str:
        seconds = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{label}{self.histories} histories, {self.steps} steps, "
            f"{self.differences} difference(s), {self.refusals} cut at a refusal "
            f"({100 * self.refusal_rate:.1f}%), {self.steered} steered around one, "
            f"{self.histories / seconds:.2f} histories/s, "
            f"{60 * self.steps / seconds:.0f} steps/min"
            + (f", {len(self.model_errors)} model error(s)" if self.model_errors else "")
        )


def search(
    config: SearchConfig,
    judge: Judge,
    stats: Stats | None = None,
    stop: Callable[[], bool] = lambda: False,
    on_history: Callable[[Prediction, Verdict], None] | None = None,
    known: set[str] | None = None,
    on_duplicate: Callable[[Signature], None] | None = None,
    memory: Memory | None = None,
) -> Found | None:
    """Run histories on `judge` until `config.seconds` pass, `stop()` says so, or a
    difference is found and shrunk; returns the (shrunk) difference, if any.

    A difference whose signature is in `known` (ids, harness/fuzz/findings.py) is a
    duplicate: counted, said to `on_duplicate`, and neither shrunk nor returned, so
    a long search goes on to other findings.  `memory` may be shared by successive
    searches of one worker (a history judged once is not run again)."""
    stats = stats if stats is not None else Stats()
    known = known if known is not None else set()
    started = time.monotonic()
    deadline = started + config.seconds
    state: dict[str, Found | float | None] = {"found": None, "shrink_deadline": None}
    best: list[tuple[tuple[int, int], Prediction, Verdict]] = []
    memory = memory if memory is not None else Memory()
    variant = parse_variant(config.variant)
    who = config.variant or "model"
    focus = FOCUS.get(config.variant or "", ())  # a variant's area in every world
    failures = [0]  # host failures in a row

    def new_difference(verdict: Verdict) -> bool:
        """A difference not met before (a duplicate is said once per history)."""
        if not verdict.differs:
            return False
        signature = signature_of(verdict.outcome, who)
        if signature.id not in known:
            return True
        if not verdict.remembered:
            stats.duplicates += 1
            if on_duplicate is not None:
                on_duplicate(signature)
        return False

    def judged(history: History) -> tuple[Prediction, Verdict] | None:
        found = state["found"]
        prediction = predict_history(history, config.series, variant)
        if not prediction.history.steps:
            return None  # the first step was refused: nothing to run
        verdict = memory.recall(prediction.history)
        if verdict is not None:
            return prediction, verdict
        if found is not None and variant is not None:
            # Shrinking a variant's difference: where the variant predicts what the
            # model predicts, the kernel can show only a model difference, which is
            # not what is being shrunk; no guest for it.
            verdict = ModelJudge(config.series).judge(prediction)
            if not verdict.differs:
                stats.shrink_skipped += 1
                return prediction, Verdict(verdict.outcome, 0, True, True)
        now = time.monotonic()
        if found is None and (now > deadline or stop()):
            raise Stop
        if isinstance(found, Found):
            shrink_deadline = state["shrink_deadline"]
            assert isinstance(shrink_deadline, float)
            if now > shrink_deadline or stop():
                raise Stop
        verdict = judge.judge(prediction)
        if verdict.outcome.status == "host-failure":  # the host's, not the kernel's
            stats.host_failures += 1
            failures[0] += 1
            if failures[0] >= MAX_HOST_FAILURES:
                raise HostFailures(verdict.outcome.error or "host failure")
            return None
        failures[0] = 0
        memory.keep(prediction.history, verdict)
        stats.histories += 1
        stats.steps += verdict.steps_run
        if prediction.cut:
            stats.refusals += 1
        if history.steered:
            stats.steered += 1
        stats.refused.update(refusal_reasons(prediction))
        if prediction.model_error and prediction.refused not in stats.model_errors:
            stats.model_errors.append(prediction.refused or "")
        if isinstance(found, Found):
            found.shrink_runs += 1
            stats.shrink_runs += 1
        stats.checked.update(verdict.checked)
        stats.told.update(verdict.told_apart)
        for name in verdict.told_apart:
            stats.told_apart.setdefault(name, stats.histories)
        if on_history is not None:
            on_history(prediction, verdict)
        if new_difference(verdict):
            size = (len(prediction.history.steps), len(prediction.history.names))
            if not best or size < best[0][0]:
                best[:] = [(size, prediction, verdict)]
            if found is None:
                stats.differences += 1
                state["found"] = Found(
                    prediction, verdict, verdict, stats.histories, now - started, time.monotonic()
                )
                state["shrink_deadline"] = time.monotonic() + config.shrink_seconds
        return prediction, verdict

    @settings(
        database=None,
        max_examples=10**9,
        deadline=None,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        print_blob=False,
    )
    @hypothesis_seed(config.seed)
    @given(
        uniform_histories(config.max_steps, config.series, focus, config.palette)
        if config.uniform
        else histories(config.max_steps, config.series, focus, config.palette)
    )
    def run(history: History) -> None:
        result = judged(history)
        if result is None or not result[1].differs:
            return
        signature = signature_of(result[1].outcome, who)
        if signature.id not in known:
            raise _Difference(*result)  # one raise site: hypothesis sees one failure

    try:
        run()
    except _Difference as exc:
        return _finish(state["found"], exc.prediction, exc.verdict, True)
    except Stop:
        if best:
            _, prediction, verdict = best[0]
            return _finish(state["found"], prediction, verdict, False)
    return None


def _finish(found: object, prediction: Prediction, verdict: Verdict, shrunk: bool) -> Found:
    assert isinstance(found, Found)
    found.shrink_seconds = time.monotonic() - found.found_at
    found.prediction, found.verdict, found.shrunk = prediction, verdict, shrunk
    return found
