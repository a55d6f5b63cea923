"""Compare a predicted step with an observed one and explain the difference.

The report a livepatch engineer reads on a failure: the first step that differs, each
differing field as expected-vs-observed (a unified diff for log lines, key by key for
sysfs, modules and implementations), and the steps that led there.
"""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.outcome.record import COMPARED_FIELDS, StepRecord


@dataclass(frozen=True)
class FieldDiff:
    field: str
    lines: tuple[str, ...]  # human-readable explanation, one item per line


@dataclass(frozen=True)
class Mismatch:
    index: int
    step: str
    diffs: tuple[FieldDiff, ...]

    @property
    def fields(self) -> list[str]:
        return [d.field for d in self.diffs]


def errno_name(value: int) -> str:
    if value == 0:
        return "0 (success)"
    name = errno.errorcode.get(value, "?")
    return f"-{name} ({os.strerror(value)})"


def _diff_mapping(
    expected: dict[str, str],
    observed: dict[str, str],
    explain: Callable[[str | None, str | None], str] = lambda _want, _got: "",
) -> list[str]:
    lines = []
    for key in sorted(set(expected) | set(observed)):
        want, got = expected.get(key), observed.get(key)
        if want == got:
            continue
        want_text = "(absent)" if want is None else repr(want)
        got_text = "(absent)" if got is None else repr(got)
        lines.append(f"{key}: expected {want_text}, observed {got_text}{explain(want, got)}")
    return lines


def _not_called(want: str | None, got: str | None) -> str:
    """`ran`: saying so when a watched function was not called at all, which is the
    scenario's command to change rather than a livepatch behaviour."""
    return NOT_CALLED if _ran_nothing(got) and not _ran_nothing(want) else ""


NOT_CALLED = " - the command did not call it at all (neither the original nor a replacement ran)"


def _ran_nothing(ran: str | None) -> bool:
    return ran is not None and ran.partition("*")[0] == "none"


def _diff_log(expected: Sequence[str], observed: Sequence[str]) -> list[str]:
    return list(
        difflib.unified_diff(
            list(expected), list(observed), "expected", "observed", lineterm="", n=2
        )
    )


def diff_records(expected: StepRecord, observed: StepRecord) -> list[FieldDiff]:
    diffs: list[FieldDiff] = []
    for name in COMPARED_FIELDS:
        want, got = getattr(expected, name), getattr(observed, name)
        if want == got:
            continue
        if name == "errno" and expected.step.startswith("trigger "):  # the command's status
            lines = [f"expected exit status {want}, observed exit status {got}"]
        elif name == "errno":
            lines = [f"expected {errno_name(want)}, observed {errno_name(got)}"]
        elif name == "log":
            lines = _diff_log(want, got)
        elif name == "pending":
            lines = [f"expected {want or 'no transition'}, observed {got or 'no transition'}"]
        elif name == "ran":
            lines = _diff_mapping(want, got, _not_called)
        elif name == "report":
            lines = [f"expected {want or 'no kernel report'}, observed {got or 'no kernel report'}"]
        else:
            lines = _diff_mapping(want, got)
        diffs.append(FieldDiff(name, tuple(lines)))
    return diffs


def first_mismatch(
    predicted: Sequence[StepRecord], observed: Sequence[StepRecord]
) -> Mismatch | None:
    """The first observed step that differs from its prediction, if any."""
    for want, got in zip(predicted, observed, strict=False):
        diffs = diff_records(want, got)
        if diffs:
            return Mismatch(index=got.index, step=got.step, diffs=tuple(diffs))
    return None


def render_mismatch(mismatch: Mismatch, observed: Sequence[StepRecord], context: int = 3) -> str:
    """Text report: the steps before the mismatch (observed log), then the diff."""
    out = []
    start = max(0, mismatch.index - context)
    if start < mismatch.index:
        out.append("steps before it (as observed):")
        for record in observed[start : mismatch.index]:
            out.append(f"  [{record.index + 1}] {record.step}")
            out.extend(f"        {line}" for line in record.log)
    out.append(f"first difference at step {mismatch.index + 1}: {mismatch.step}")
    for diff in mismatch.diffs:
        out.append(f"  {diff.field}:")
        out.extend(f"    {line}" for line in diff.lines)
    return "\n".join(out)
