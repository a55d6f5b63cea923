"""Random histories (hypothesis strategies) and what the model makes of them.

A history is a world (palette patches, targets, process groups, BPF programs) and a
list of steps over it, drawn from what the model says is possible after the steps
before (harness/fuzz/steering.py), or, `uniform_histories`, uniformly from every step
over the world.  Before it
runs anywhere it is predicted step by step by the model and, with a variant, by the
variant too; at the first step either refuses (a step whose outcome the kernel does
not make deterministic, or that would crash it: `StepModel.check_*`) the history is
cut, so what runs is always a history a scenario file could contain.  How many
histories are cut is the refusal rate the fuzzer reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from harness.errors import ScenarioError
from harness.fuzz.config import DEFAULT_MAX_STEPS
from harness.fuzz.palette import (
    BASE_TARGET_NAMES,
    EXTRAS,
    MAX_EXTRAS,
    MAX_PATCHES,
    PATCH_NAMES,
    PINNED,
)
from harness.fuzz.steering import Steering, closed, pairing_refusal, reason_of
from harness.fuzz.worlds import allowed, named, patches_of, scenario_of, steps_of, world
from harness.model.kernel.system import ModuleMemoryError
from harness.model.predict import StepModel
from harness.model.variants import Variant
from harness.outcome.record import StepRecord
from harness.scenario.step_types import Step, format_step
from harness.scenario.types import Scenario

# Not drawn beside the spinner bound to CPU 1: spinners bound to no CPU (on two, the
# scheduler decides whether one runs beside the retry work, and the model refuses
# one between calls: tasks.spinner_refusal; found by the fuzzer on 6.1) and their
# patch.  Processes calling getpid are drawn there since they PAUSE after each call
# (images/klp-getpid.c: 6.12's transitions no longer wait minutes for QEMU's TCG thread).
NOT_ON_TWO_CPUS = ("t_loop", "t_spin", "p_spin")

# Whether another step follows: stop first (what shrinking tends to), 1 in 8.
MORE_STEPS = (False, True, True, True, True, True, True, True)


@dataclass(frozen=True)
class History:
    names: tuple[str, ...]  # its world: palette names, palette order (`named(steps)`)
    steps: tuple[Step, ...]
    # drawn steps the model refused, made --nowait or ended at (steered generation),
    # and the reason of each (steering.reason_of)
    steered: int = field(default=0, compare=False)
    refusals: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def of(cls, steps: Sequence[Step], steered: int = 0, refusals: Sequence[str] = ()) -> History:
        return cls(named(steps), tuple(steps), steered, tuple(refusals))

    @property
    def patches(self) -> tuple[str, ...]:
        return patches_of(self.names)

    @property
    def texts(self) -> list[str]:
        return [format_step(step) for step in self.steps]

    @property
    def digest(self) -> str:
        text = " ".join(self.names) + "\n" + "\n".join(self.texts)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def scenario(self) -> Scenario:
        base = scenario_of(self.names)
        return dataclasses.replace(base, path=Path(f"fuzz-{self.digest}.toml"), steps=self.steps)

    def prefix(self, length: int) -> History:
        """The first `length` steps, a running trace untraced after them."""
        return History(self.names, closed(self.steps[:length]))


@st.composite
def _steered_step(draw: st.DrawFn, steering: Steering) -> Step | None:
    """One step: a group, then a step from its menu (one span, so the shrinker
    deletes a step as a whole)."""
    groups = steering.groups()
    menu = steering.menu(groups[draw(st.integers(min_value=0, max_value=len(groups) - 1))])
    return steering.take(menu[draw(st.integers(min_value=0, max_value=len(menu) - 1))])


@st.composite
def _steered_steps(draw: st.DrawFn, steering: Steering, left: int) -> list[Step]:
    """A step, then (if a choice says so) the rest of the history, drawn inside this
    step's span: the shrinker can replace a span by one nested in it, which deletes
    every step in between at once (a load/disable/unload cycle that only returns to
    where it started goes as a whole)."""
    step = draw(_steered_step(steering))
    if step is None:
        return []
    if steering.ended or left <= 1 or not draw(st.sampled_from(MORE_STEPS)):
        return [step]
    return [step, *draw(_steered_steps(steering, left - 1))]


@st.composite
def worlds(
    draw: st.DrawFn,
    series: str = "6.1",
    focus: Sequence[str] = (),
    palette: Sequence[str] | None = None,
) -> tuple[str, ...]:
    """1..MAX_PATCHES palette patches and 0..MAX_EXTRAS scenes (kprobe and spinner
    targets, process groups, BPF programs), with the base targets, the `focus`
    (palette names or scenes every world holds) and what the patches imply; what
    the profile cannot follow is not drawn (worlds.allowed), nor what `palette` (if
    given) leaves out."""
    patches = [n for n in PATCH_NAMES if allowed(n, series) and _in(n, palette)]
    extras = [n for n in EXTRAS if allowed(n, series) and _in(n, palette)]
    names = draw(st.lists(st.sampled_from(patches), min_size=1, max_size=MAX_PATCHES, unique=True))
    more = (
        draw(st.lists(st.sampled_from(extras), max_size=MAX_EXTRAS, unique=True)) if extras else []
    )
    chosen = world([*names, *more, *BASE_TARGET_NAMES, *focus])
    if PINNED in chosen:  # a two-CPU guest (docs/fuzz.md, "Two CPUs")
        chosen = tuple(n for n in chosen if n not in NOT_ON_TWO_CPUS)
    return chosen


def _in(name: str, palette: Sequence[str] | None) -> bool:
    return palette is None or name in palette


@st.composite
def histories(
    draw: st.DrawFn,
    max_steps: int = DEFAULT_MAX_STEPS,
    series: str = "6.1",
    focus: Sequence[str] = (),
    palette: Sequence[str] | None = None,
) -> History:
    """A world, then 1..max_steps steps, each drawn from what the model's state after
    the steps before it allows (harness/fuzz/steering.py).  After each step a choice
    says whether another follows (1 in 8 does not, which shrinks towards shorter
    histories, as a list's length does).  A step the model refuses is steered around
    or ends the history (`Steering.take`); a trace still running at the end is
    untraced."""
    steering = Steering(draw(worlds(series, focus, palette)), series)
    draw(_steered_steps(steering, max_steps))
    steering.close()
    return History.of(steering.steps, steering.steered, steering.refusals)


@st.composite
def uniform_histories(
    draw: st.DrawFn,
    max_steps: int = DEFAULT_MAX_STEPS,
    series: str = "6.1",
    focus: Sequence[str] = (),
    palette: Sequence[str] | None = None,
) -> History:
    """Uniform draws (`--uniform`): a world, then 1..max_steps steps over it (both
    shrink towards fewer and earlier choices).  The history's scenario has what its
    steps name: a drawn patch no step uses is left out, so a shrunk history names no
    module it does not need."""
    names = draw(worlds(series, focus, palette))
    steps = draw(st.lists(st.sampled_from(steps_of(names)), min_size=1, max_size=max_steps))
    return History.of(steps)


@dataclass
class Prediction:
    """A history cut at its first refused step, with both models' records of it."""

    history: History  # the steps that run (cut)
    drawn: int  # steps before the cut
    records: list[StepRecord]  # what the model under test predicts (the variant's)
    reference: list[StepRecord]  # what the model itself predicts
    refused: str | None = None  # why it was cut (None: it was not)
    model_error: bool = False  # the model itself failed (a bug, not a refusal)

    @property
    def cut(self) -> bool:
        return self.refused is not None


def predict_history(
    history: History, series: str = "6.1", variant: Variant | None = None
) -> Prediction:
    """Both models step by step; the history is cut at the first step either refuses
    (the model: the kernel would not be deterministic there; the variant: it cannot
    say; a scenario file: the pairing of trace and attach steps) or fails on
    (ModuleMemoryError and other model errors); a trace running at the cut is
    untraced.  The records end at a step whose record is a kernel report: the runner
    runs nothing after it (a closing `untrace` may follow in the history)."""
    scenario = history.scenario()
    model = StepModel(scenario, series)
    other = StepModel(scenario, series, variant=variant) if variant is not None else None
    reference: list[StepRecord] = []
    records: list[StepRecord] = []
    refused: str | None = None
    model_error = False
    for index, step in enumerate(history.steps):
        refused = pairing_refusal(history.steps[:index], step)
        if refused is None:
            try:
                want = model.step(index, step)
            except ScenarioError as exc:
                refused = exc.message
            except (ModuleMemoryError, Exception) as exc:  # a model bug: said, not hidden
                refused, model_error = f"model error: {type(exc).__name__}: {exc}", True
        if refused is None and other is not None:
            try:
                records.append(other.step(index, step))
            except Exception as exc:  # the variant's own limits or inconsistencies
                refused = f"variant {variant}: {type(exc).__name__}: {exc}"
        if refused is not None:
            return _cut(history, index, series, variant, refused, model_error)
        reference.append(want)
        if want.report:  # the guest is hurt: nothing after it is run or predicted
            break
    return Prediction(history, len(history.steps), records if other else reference, reference)


def _cut(
    history: History,
    length: int,
    series: str,
    variant: Variant | None,
    refused: str | None,
    model_error: bool,
) -> Prediction:
    """The prediction of the history's first `length` steps (closed: a running trace
    untraced), which both models accept."""
    cut = History.of(closed(history.steps[:length]))
    again = predict_history(cut, series, variant) if cut.steps else None
    records = again.records if again is not None else []
    reference = again.reference if again is not None else []
    return Prediction(cut, len(history.steps), records, reference, refused, model_error)


def refusal_reasons(prediction: Prediction) -> list[str]:
    """The reasons of a history's refusals: those steered around while it was drawn,
    and the one it was cut at."""
    reasons = list(prediction.history.refusals)
    if prediction.refused is not None and not prediction.model_error:
        reasons.append(reason_of(prediction.refused))
    return reasons
