"""What a results directory says about a scenario, as typed frozen values.

The HTML report reads a run's artifacts (harness/report/artifacts.py) into these and
renders only these, so the pages depend on the artifacts' JSON format and not on the
runner's classes, which may change or move (the report must still read old results).
That is also why the compared fields are named here rather than imported from the
StepRecord's module: they are the JSON's names, and a test checks they still match.

Everything newer than the first format is optional: `Record.stacks` is None for a run
that recorded no func stacks, `Outcome.recorded` is False for one without
outcome.json (its status then derived, its times and command unknown).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# The fields the report compares, as named in the JSON (StepRecord's COMPARED_FIELDS).
COMPARED_FIELDS = (
    "errno", "log", "sysfs", "modules", "impls", "pending", "ran", "actors", "report"
)  # fmt: skip

Status = Literal["pass", "difference", "refused", "skipped", "host-failure", "incomplete"]
# "incomplete" is the reader's own: a directory whose files could not be read (being
# written, or left half-written); outcome.json never says it.
STATUSES: tuple[Status, ...] = (
    "pass",
    "difference",
    "refused",
    "skipped",
    "host-failure",
    "incomplete",
)

NOP_SUFFIX = ":nop"


@dataclass(frozen=True)
class Layer:
    """One entry of a function's func stack: the patch whose klp_func it is, and
    whether that klp_func is a nop (added by an atomic replace for a function the
    new patch no longer changes: calls reaching it run the original)."""

    patch: str
    nop: bool = False


@dataclass(frozen=True)
class Record:
    """One step's StepRecord as read from predicted.json or observed.json.

    `number` is 1-based (the step number a reader and the text report use).  `stacks`
    (predicted only, newer runs) maps `object:func` to its func stack, bottom first;
    None when the run did not record stacks, which is not the same as no function
    being patched ({})."""

    number: int
    step: str
    errno: int = 0
    log: tuple[str, ...] = ()
    sysfs: Mapping[str, str] = field(default_factory=dict)
    modules: Mapping[str, str] = field(default_factory=dict)
    impls: Mapping[str, str] = field(default_factory=dict)
    pending: str | None = None
    ran: Mapping[str, str] = field(default_factory=dict)
    actors: Mapping[str, str] = field(default_factory=dict)
    due: Mapping[str, int] = field(default_factory=dict)
    retries: int | None = None
    report: str = ""
    stacks: Mapping[str, tuple[Layer, ...]] | None = None

    def value(self, name: str) -> object:
        """A compared field by its JSON name (COMPARED_FIELDS)."""
        if name not in COMPARED_FIELDS:
            raise KeyError(name)
        value: object = getattr(self, name)
        return value


@dataclass(frozen=True)
class StepTime:
    """When a step ran: host clock seconds (always), guest kernel clock seconds (when
    the runner could read them)."""

    number: int
    step: str
    host_start: float
    host_end: float
    guest_start: float | None = None
    guest_end: float | None = None


@dataclass(frozen=True)
class Outcome:
    """How a scenario ended on a profile.  `recorded` says whether it comes from
    outcome.json or was derived from the other artifacts (older runs), in which case
    `seconds`, `command` and `steps` are unknown (None, None, ())."""

    scenario: str
    profile: str
    status: Status
    reason: str | None = None
    error: str | None = None
    seconds: float | None = None
    first_difference: int | None = None  # 1-based step number
    command: str | None = None
    steps: tuple[StepTime, ...] = ()
    recorded: bool = False
    kernel: Mapping[str, str] = field(default_factory=dict)  # profile, release, vermagic
    scenario_file: str | None = None  # the scenario's path as the run was given it


@dataclass(frozen=True)
class ScenarioRun:
    """Everything a results directory says about one scenario on one profile."""

    profile: str
    scenario: str
    directory: Path
    outcome: Outcome
    predicted: tuple[Record, ...] = ()
    observed: tuple[Record, ...] = ()
    report_text: str | None = None
    artifacts: tuple[str, ...] = ()  # raw files present, relative to `directory`
    problems: tuple[str, ...] = ()  # what could not be read, one line each

    @property
    def has_stacks(self) -> bool:
        """Whether the run recorded func stacks (older runs did not)."""
        return any(record.stacks is not None for record in self.predicted)

    @property
    def has_timeline(self) -> bool:
        """Whether the run recorded step timestamps (older runs did not)."""
        return bool(self.outcome.steps)

    def pairs(self) -> list[tuple[int, Record | None, Record | None]]:
        """(step number, predicted, observed) for every step either side has, in order;
        a step the run did not reach has no observation."""
        predicted = {r.number: r for r in self.predicted}
        observed = {r.number: r for r in self.observed}
        numbers = sorted(set(predicted) | set(observed))
        return [(n, predicted.get(n), observed.get(n)) for n in numbers]


# ---- comparing ----------------------------------------------------------------------------


def differing_fields(predicted: Record | None, observed: Record | None) -> tuple[str, ...]:
    """The compared fields in which an observation differs from its prediction (none
    when either side is missing: a step not run is not a difference)."""
    if predicted is None or observed is None:
        return ()
    return tuple(name for name in COMPARED_FIELDS if predicted.value(name) != observed.value(name))


def first_difference(predicted: Sequence[Record], observed: Sequence[Record]) -> int | None:
    """The number of the first observed step that differs from its prediction, as the
    runner finds it (harness/report/compare.py `first_mismatch`)."""
    by_number = {r.number: r for r in predicted}
    for got in observed:
        if differing_fields(by_number.get(got.number), got):
            return got.number
    return None


def log_only_lines(ours: Sequence[str], theirs: Sequence[str]) -> set[int]:
    """Indexes of the lines of `ours` that a line diff against `theirs` does not match:
    the lines to mark when two logs are shown side by side."""
    matcher = difflib.SequenceMatcher(a=list(ours), b=list(theirs), autojunk=False)
    matched: set[int] = set()
    for block in matcher.get_matching_blocks():
        matched.update(range(block.a, block.a + block.size))
    return set(range(len(ours))) - matched
