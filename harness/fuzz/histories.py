"""Random histories (hypothesis strategies) and what the model makes of them.

A history is a module set (palette patches) and a list of steps over it, drawn from
what the model says is possible after the steps before (harness/fuzz/steering.py),
or, `uniform_histories`, uniformly from every step over the set.  Before it
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
from harness.fuzz.palette import MAX_PATCHES, PATCH_NAMES, module_set, scenario_of, steps_of
from harness.fuzz.steering import Steering
from harness.model.kernel.system import ModuleMemoryError
from harness.model.predict import StepModel
from harness.model.variants import Variant
from harness.outcome.record import StepRecord
from harness.scenario.step_types import (
    Disable,
    Enable,
    Force,
    Load,
    SetParam,
    Step,
    Unload,
    Wait,
    format_step,
)
from harness.scenario.types import Scenario

# Whether another step follows: stop first (what shrinking tends to), 1 in 8.
MORE_STEPS = (False, True, True, True, True, True, True, True)


@dataclass(frozen=True)
class History:
    patches: tuple[str, ...]  # palette patch names, palette order
    steps: tuple[Step, ...]
    # drawn steps the model refused, made --nowait or ended at (steered generation)
    steered: int = field(default=0, compare=False)

    @property
    def texts(self) -> list[str]:
        return [format_step(step) for step in self.steps]

    @property
    def digest(self) -> str:
        text = " ".join(self.patches) + "\n" + "\n".join(self.texts)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def scenario(self) -> Scenario:
        base = scenario_of(self.patches)
        return dataclasses.replace(base, path=Path(f"fuzz-{self.digest}.toml"), steps=self.steps)

    def prefix(self, length: int) -> History:
        return History(self.patches, self.steps[:length])


def named_patches(steps: Sequence[Step]) -> tuple[str, ...]:
    """The palette patches some step names, in palette order."""
    names = set()
    for step in steps:
        match step:
            case Load(module=name) | Unload(module=name) | SetParam(module=name):
                names.add(name)
            case Enable(patch=name) | Disable(patch=name) | Force(patch=name) | Wait(patch=name):
                names.add(name)
    return module_set(names & set(PATCH_NAMES))


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
    if left <= 1 or not draw(st.sampled_from(MORE_STEPS)):
        return [step]
    return [step, *draw(_steered_steps(steering, left - 1))]


@st.composite
def histories(draw: st.DrawFn, max_steps: int = DEFAULT_MAX_STEPS, series: str = "6.1") -> History:
    """A module set of 1..MAX_PATCHES palette patches, then 1..max_steps steps, each
    drawn from what the model's state after the steps before it allows
    (harness/fuzz/steering.py).  After each step a choice says whether another
    follows (1 in 8 does not, which shrinks towards shorter histories, as a list's
    length does).  A step the model refuses is steered around or ends the history
    (`Steering.take`)."""
    names = draw(
        st.lists(st.sampled_from(PATCH_NAMES), min_size=1, max_size=MAX_PATCHES, unique=True)
    )
    steering = Steering(module_set(names), series)
    steps = draw(_steered_steps(steering, max_steps))
    return History(named_patches(steps), tuple(steps), steering.steered)


@st.composite
def uniform_histories(draw: st.DrawFn, max_steps: int = DEFAULT_MAX_STEPS) -> History:
    """Uniform draws (`--uniform`): a module set of 1..MAX_PATCHES palette patches,
    then 1..max_steps steps over it
    (both shrink towards fewer and earlier choices).  The history's scenario has the
    patches its steps name: a drawn patch no step uses is left out, so a shrunk
    history names no module it does not need."""
    names = draw(
        st.lists(st.sampled_from(PATCH_NAMES), min_size=1, max_size=MAX_PATCHES, unique=True)
    )
    drawn = module_set(names)
    steps = draw(st.lists(st.sampled_from(steps_of(drawn)), min_size=1, max_size=max_steps))
    return History(named_patches(steps), tuple(steps))


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
    say) or fails on (ModuleMemoryError and other model errors)."""
    scenario = history.scenario()
    model = StepModel(scenario, series)
    other = StepModel(scenario, series, variant=variant) if variant is not None else None
    reference: list[StepRecord] = []
    records: list[StepRecord] = []
    refused: str | None = None
    model_error = False
    for index, step in enumerate(history.steps):
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
            cut = history.prefix(index)
            return Prediction(
                cut,
                len(history.steps),
                records[:index] if other is not None else reference,
                reference,
                refused,
                model_error,
            )
        reference.append(want)
    return Prediction(history, len(history.steps), records if other else reference, reference)
