"""Two runs side by side: what changed between them, scenario by scenario.

Meant for "did my kernel change alter livepatch behaviour" (the same scenarios on two
kernels or two trees) and for CI regressions (the same kernel, two commits of the
harness or of the scenarios).  Scenarios are paired by name and profile; when each
run holds one profile and they differ (a run on debian-6.12 against one on
debian-7.3), by name alone.  For each pair:

* its status changed: newly failing (a pass became anything else), fixed (anything
  became a pass), or another change (a difference became a host failure, ...);
* both differ from the model but at another step or for another reason;
* the kernel behaved differently: the observed records differ, field by field, even
  where each run agrees with its own model (two kernels the model tells apart).
  A sysfs file that only one run's kernel has (`stack_order` since 6.14, `replace`
  since 6.11) is said once for the whole run and left out of every comparison: it
  would otherwise hide the step that really differs in every scenario;
* its time changed beyond noise: by more than `SLOWER` times and more than
  `NOISE_SECONDS` (TCG guests on a shared host vary by tens of percent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness.errors import UsageError
from harness.report.artifact_types import Record, ScenarioRun, differing_fields
from harness.report.artifacts import natural_key, read_run
from harness.report.markup import page, text

SLOWER = 1.5
NOISE_SECONDS = 2.0


@dataclass(frozen=True)
class BehaviourChange:
    """The first step whose observation differs between the runs, and how."""

    number: int
    step: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class PairDiff:
    scenario: str
    profile_a: str
    profile_b: str
    status_a: str
    status_b: str
    first_a: int | None
    first_b: int | None
    seconds_a: float | None
    seconds_b: float | None
    behaviour: BehaviourChange | None

    @property
    def kind(self) -> str:
        if self.status_a != self.status_b:
            if self.status_b == "pass":
                return "fixed"
            return "newly failing" if self.status_a == "pass" else "status changed"
        if self.status_a == "difference" and self.first_a != self.first_b:
            return "first difference moved"
        if self.behaviour is not None:
            return "kernel behaves differently"
        if self.slower_or_faster:
            return "time changed"
        return ""

    @property
    def slower_or_faster(self) -> bool:
        a, b = self.seconds_a, self.seconds_b
        if a is None or b is None or abs(a - b) <= NOISE_SECONDS:
            return False
        return max(a, b) > SLOWER * min(a, b)


@dataclass(frozen=True)
class RunDiff:
    name_a: str
    name_b: str
    pairs: tuple[PairDiff, ...]
    only_a: tuple[str, ...]  # "scenario [profile]"
    only_b: tuple[str, ...]
    sysfs_only_a: tuple[str, ...] = ()  # sysfs files only run A's kernel has
    sysfs_only_b: tuple[str, ...] = ()

    @property
    def changed(self) -> tuple[PairDiff, ...]:
        return tuple(pair for pair in self.pairs if pair.kind)


def sysfs_files(runs: Sequence[ScenarioRun]) -> set[str]:
    """The names of the sysfs files (`enabled`, `stack_order`, ...) a run observed."""
    return {
        path.rsplit("/", 1)[-1] for run in runs for record in run.observed for path in record.sysfs
    }


def _without(record: Record, files: frozenset[str]) -> Record:
    if not files:
        return record
    kept = {k: v for k, v in record.sysfs.items() if k.rsplit("/", 1)[-1] not in files}
    return replace(record, sysfs=kept)


def behaviour_change(
    a: Sequence[Record], b: Sequence[Record], ignored: frozenset[str] = frozenset()
) -> BehaviourChange | None:
    """The first step both runs observed whose records differ (steps one run never
    reached are no behaviour: a status change says that), sysfs files `ignored`."""
    by_number = {record.number: record for record in b}
    for got_a in a:
        got_b = by_number.get(got_a.number)
        if got_b is None:
            continue
        fields = differing_fields(_without(got_a, ignored), _without(got_b, ignored))
        if fields:
            return BehaviourChange(got_a.number, got_a.step, fields)
    return None


def _pair(a: ScenarioRun, b: ScenarioRun, ignored: frozenset[str]) -> PairDiff:
    return PairDiff(
        scenario=a.scenario,
        profile_a=a.profile,
        profile_b=b.profile,
        status_a=a.outcome.status,
        status_b=b.outcome.status,
        first_a=a.outcome.first_difference,
        first_b=b.outcome.first_difference,
        seconds_a=a.outcome.seconds,
        seconds_b=b.outcome.seconds,
        behaviour=behaviour_change(a.observed, b.observed, ignored),
    )


def diff_runs(run_a: Path, run_b: Path) -> RunDiff:
    """Pair the scenarios of two results directories and compare each pair."""
    a_runs, b_runs = read_run(run_a), read_run(run_b)
    if not a_runs or not b_runs:
        empty = run_a if not a_runs else run_b
        raise UsageError(f"{empty}: no scenario results in it")
    profiles_a = {r.profile for r in a_runs}
    profiles_b = {r.profile for r in b_runs}
    by_name = len(profiles_a) == 1 and len(profiles_b) == 1 and profiles_a != profiles_b

    def key(run: ScenarioRun) -> tuple[str, str]:
        return (run.scenario, "" if by_name else run.profile)

    a_keys = {key(r): r for r in a_runs}
    b_keys = {key(r): r for r in b_runs}
    common = sorted(set(a_keys) & set(b_keys), key=lambda k: natural_key(" ".join(k)))
    files_a, files_b = sysfs_files(a_runs), sysfs_files(b_runs)
    only_one = frozenset(files_a ^ files_b)
    pairs = tuple(_pair(a_keys[k], b_keys[k], only_one) for k in common)

    def label(run: ScenarioRun) -> str:
        return f"{run.scenario} [{run.profile}]"

    only_a = tuple(label(a_keys[k]) for k in sorted(set(a_keys) - set(b_keys)))
    only_b = tuple(label(b_keys[k]) for k in sorted(set(b_keys) - set(a_keys)))
    return RunDiff(
        str(run_a),
        str(run_b),
        pairs,
        only_a,
        only_b,
        tuple(sorted(files_a - files_b)),
        tuple(sorted(files_b - files_a)),
    )


def _profiles(pair: PairDiff) -> str:
    if pair.profile_a == pair.profile_b:
        return pair.profile_a
    return f"{pair.profile_a} -> {pair.profile_b}"


def _detail(pair: PairDiff) -> str:
    parts = [f"{pair.status_a} -> {pair.status_b}"]
    if pair.first_a != pair.first_b and (pair.first_a or pair.first_b):
        parts.append(f"first difference step {pair.first_a or '-'} -> {pair.first_b or '-'}")
    if pair.behaviour is not None:
        change = pair.behaviour
        parts.append(
            f"observed step {change.number} `{change.step}` differs in {', '.join(change.fields)}"
        )
    if pair.slower_or_faster:
        parts.append(f"{pair.seconds_a:.1f}s -> {pair.seconds_b:.1f}s")
    return "; ".join(parts)


def diff_text(diff: RunDiff) -> str:
    """One line per pair that changed, grouped by kind, then the unpaired scenarios."""
    lines = [f"A: {diff.name_a}", f"B: {diff.name_b}"]
    for side, files in (("A", diff.sysfs_only_a), ("B", diff.sysfs_only_b)):
        if files:
            lines.append(f"sysfs files only {side}'s kernel has (not compared): {', '.join(files)}")
    kinds = sorted({pair.kind for pair in diff.changed})
    for kind in kinds:
        members = [pair for pair in diff.changed if pair.kind == kind]
        lines.append(f"{kind} ({len(members)}):")
        lines += [f"  {p.scenario} [{_profiles(p)}]: {_detail(p)}" for p in members]
    for title, names in (("only in A", diff.only_a), ("only in B", diff.only_b)):
        if names:
            lines.append(f"{title} ({len(names)}):")
            lines += [f"  {name}" for name in names]
    unchanged = len(diff.pairs) - len(diff.changed)
    lines.append(f"{len(diff.changed)} changed, {unchanged} unchanged of {len(diff.pairs)} paired")
    return "\n".join(lines) + "\n"


def diff_html(diff: RunDiff) -> str:
    """The same as a page: a table of every pair that changed."""
    rows = "".join(
        f'<tr class="change" data-kind="{text(p.kind)}"><th scope="row">{text(p.scenario)}</th>'
        f"<td>{text(_profiles(p))}</td><td>{text(p.kind)}</td><td>{text(_detail(p))}</td></tr>"
        for p in diff.changed
    )
    table = (
        '<div class="scroll"><table id="diff"><thead><tr><th>scenario</th><th>profile</th>'
        f"<th>change</th><th>detail</th></tr></thead><tbody>{rows}</tbody></table></div>"
        if rows
        else '<p class="note">No scenario changed.</p>'
    )
    unpaired = "".join(
        f"<section><h2>{title}</h2><ul>{''.join(f'<li>{text(n)}</li>' for n in names)}</ul>"
        "</section>"
        for title, names in (("Only in A", diff.only_a), ("Only in B", diff.only_b))
        if names
    )
    body = (
        f"<header><h1>klp-harness diff</h1><p>A: {text(diff.name_a)}<br>B: {text(diff.name_b)}"
        f"</p></header><main>{table}{unpaired}</main>"
    )
    return page("klp-harness diff", body)
