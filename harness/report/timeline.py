"""A scenario's steps on a time axis, as inline SVG: what happened while, at a glance.

A livepatch difference is often about timing: a transition that stayed pending over
several steps, retries that reached `signaling remaining tasks`, a spinner whose
patch_state never moved, a callback that ran in the wrong step.  The steps table says
what each step ended with; this draws the same records against the host clock of
outcome.json's step timestamps (only step boundaries are timed: events inside a step
are spread over it in log order, and the caption says so).

Lanes, top to bottom: the steps (linked to their rows, the first difference marked),
transitions (from the kernel's own transition lines, kept open while `pending` says
so), retries and signals (observed `retries`, the `signaling remaining tasks` line,
the model's `due`), callbacks (log lines naming a callback), one lane per actor
(`patch_state`), and kernel reports.  Plain SVG, no script, so it prints and works
from a CI artifact opened as a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.report.artifact_types import Record, ScenarioRun, StepTime, differing_fields
from harness.report.markup import text as esc

WIDTH = 1000.0  # viewBox units; the SVG scales to the page width
GUTTER = 130.0  # lane labels
PLOT = WIDTH - GUTTER - 10.0
LANE = 24.0
AXIS = 22.0

TRANSITION_LINE = re.compile(
    r"livepatch: '(?P<patch>[^']+)': (?:(?P<phase>initializing|starting|completing) "
    r"(?P<dir>patching|unpatching) transition|(?P<done>patching|unpatching) complete|"
    r"reversing transition from \w+ to (?P<to>patching|unpatching))"
)
SIGNAL_LINE = "livepatch: signaling remaining tasks"
CALLBACK = re.compile(r"\b(?P<name>(?:pre|post)_(?:un)?patch)(?:_callback)?\b")
PATCH_STATE = re.compile(r"patch_state=(-?\d+)")


@dataclass
class _Span:
    lane: str
    start: float
    end: float
    css: str
    label: str
    title: str
    data: str = ""  # extra attributes, already escaped
    short: str = ""  # the label when `label` does not fit


@dataclass
class _Mark:
    lane: str
    at: float
    css: str
    symbol: str
    title: str
    dy: float = 0.0  # up (-) or down (+) in the lane, so marks of one lane can share an x
    anchor: str = "middle"


class _Axis:
    """Host seconds -> x, from the first step's start to the last step's end."""

    def __init__(self, steps: tuple[StepTime, ...]) -> None:
        self.t0 = min(s.host_start for s in steps)
        self.span = max(max(s.host_end for s in steps) - self.t0, 1e-3)

    def x(self, seconds: float) -> float:
        return GUTTER + (seconds - self.t0) / self.span * PLOT

    def ticks(self) -> list[float]:
        """Round seconds, at most ~10 of them."""
        size = next(
            (s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300) if self.span / s <= 10),
            600.0,
        )
        count = int(self.span / size) + 1
        return [i * size for i in range(count)]


def _at(time: StepTime, line: int, lines: int) -> float:
    """Where line `line` of a step's `lines` log lines sits in the step's time."""
    return time.host_start + (line + 0.5) / max(lines, 1) * (time.host_end - time.host_start)


def _events(
    run: ScenarioRun, times: dict[int, StepTime]
) -> tuple[list[_Span], list[_Mark], list[str]]:
    """Spans and marks of every lane, and the actors (one lane each)."""
    spans: list[_Span] = []
    marks: list[_Mark] = []
    actors: list[str] = []
    open_: tuple[str, str, float] | None = None  # patch, direction, start
    last_end = max(t.host_end for t in times.values())
    starts = sorted(t.host_start for t in times.values())

    def close(at: float, how: str) -> None:
        nonlocal open_
        if open_ is None:
            return
        patch, direction, start = open_
        spans.append(
            _Span(
                "transition",
                start,
                at,
                f"tl-transition {direction} {how}",
                f"{patch} {direction}",
                f"{patch}: {direction} transition ({how})",
                f' data-patch="{esc(patch)}"',
            )
        )
        open_ = None

    for number, want, got in run.pairs():
        time = times.get(number)
        record = got or want
        if time is None or record is None:
            continue
        for k, line in enumerate(record.log):
            at = _at(time, k, len(record.log))
            match = TRANSITION_LINE.search(line)
            if match and match["phase"] in ("initializing", "starting") and open_ is None:
                open_ = (match["patch"], match["dir"], at)
            elif match and match["to"]:
                close(at, "reversed")
                open_ = (match["patch"], match["to"], at)
            elif match and match["done"]:
                close(at, "complete")
            elif SIGNAL_LINE in line:
                marks.append(_Mark("retries", at, "tl-signal", "⚑", f"step {number}: {line}"))
            callback = CALLBACK.search(line)
            if callback:
                kind = "pre" if callback["name"].startswith("pre") else "post"
                marks.append(_Mark("callbacks", at, f"tl-callback {kind}", "●", line))
        if got is not None and got.pending and open_ is None:
            open_ = (got.pending, "transition", time.host_start)
        if got is not None and not got.pending and open_ is not None:
            close(time.host_end, "settled")
        _retry_marks(number, want, got, time, marks)
        for actor, value in (got.actors if got else {}).items():
            if actor not in actors:
                actors.append(actor)
            state = PATCH_STATE.search(value)
            css = f"tl-actor ps{state[1]}" if state else "tl-actor stopped"
            # what a step observed holds until the next step begins
            until = next((t for t in starts if t > time.host_start), time.host_end)
            spans.append(
                _Span(
                    f"actor:{actor}",
                    time.host_start,
                    until,
                    css,
                    f"patch_state={state[1]}" if state else value,
                    f"step {number}: {actor}: {value}",
                    f' data-actor="{esc(actor)}"',
                    state[1] if state else "",
                )
            )
        report = got.report if got and got.report else (want.report if want else "")
        if report:
            side = "observed" if got and got.report else "predicted"
            marks.append(_Mark("reports", time.host_end, "tl-report", "✖", f"{side}: {report}"))
    close(last_end, "unfinished")
    return spans, marks, actors


def _retry_marks(
    number: int, want: Record | None, got: Record | None, time: StepTime, marks: list[_Mark]
) -> None:
    if got is not None and got.retries:
        title = f"step {number}: the kernel retried the stalled transition {got.retries} times"
        marks.append(
            _Mark("retries", time.host_start, "tl-retries", f"↻{got.retries}", title, 4, "start")
        )
    if want is not None and want.due:
        due = want.due
        title = (
            f"step {number}: model: signaling due after {due.get('after')} failed retries "
            f"since step {due.get('epoch', 0) + 1}"
            + (", a retry completes it" if due.get("completes") else "")
        )
        marks.append(_Mark("retries", time.host_end, "tl-due", "◇", title, -5))


def timeline_svg(run: ScenarioRun) -> str:
    """The `<div class="timeline">` of a run with step timestamps ("" without)."""
    times = {t.number: t for t in run.outcome.steps}
    if not times:
        return ""
    axis = _Axis(run.outcome.steps)
    spans, marks, actors = _events(run, times)
    lanes = ["steps", "transition"]
    lanes += [lane for lane in ("retries", "callbacks") if any(m.lane == lane for m in marks)]
    lanes += [f"actor:{a}" for a in actors]
    if any(m.lane == "reports" for m in marks):
        lanes.append("reports")
    row = {lane: AXIS + i * LANE for i, lane in enumerate(lanes)}
    height = AXIS + len(lanes) * LANE + 4
    out = [
        f'<svg class="timeline-svg" viewBox="0 0 {WIDTH:.0f} {height:.0f}" '
        f'role="img" aria-label="steps on a time axis">'
    ]
    for tick in axis.ticks():
        x = axis.x(axis.t0 + tick)
        out.append(
            f'<line class="tick" x1="{x:.1f}" y1="{AXIS - 4:.0f}" x2="{x:.1f}" y2="{height:.0f}"/>'
            f'<text class="tick-label" x="{x:.1f}" y="{AXIS - 8:.0f}">{tick:g} s</text>'
        )
    for lane, y in row.items():
        name = lane.removeprefix("actor:")
        out.append(
            f'<text class="lane-label" x="4" y="{y + LANE / 2 + 4:.1f}">{esc(name[:22])}</text>'
            f'<line class="lane-rule" x1="0" y1="{y:.1f}" x2="{WIDTH:.0f}" y2="{y:.1f}"/>'
        )
    out += _step_bars(run, times, axis, row["steps"])
    for span in spans:
        x0, x1 = axis.x(span.start), max(axis.x(span.end), axis.x(span.start) + 2)
        y = row[span.lane]
        fits = [t for t in (span.label, span.short) if t and x1 - x0 > 6 * len(t) + 6]
        label = (
            f'<text class="span-label" x="{x0 + 3:.1f}" y="{y + LANE / 2 + 4:.1f}">'
            f"{esc(fits[0])}</text>"
            if fits
            else ""
        )
        out.append(
            f'<g class="{esc(span.css)}"{span.data}><title>{esc(span.title)}</title>'
            f'<rect x="{x0:.1f}" y="{y + 3:.1f}" width="{x1 - x0:.1f}" height="{LANE - 6:.0f}"'
            f' rx="3"/>{label}</g>'
        )
    for mark in marks:
        x, y = axis.x(mark.at), row[mark.lane] + LANE / 2 + 4 + mark.dy
        out.append(
            f'<g class="{esc(mark.css)}"><title>{esc(mark.title)}</title>'
            f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{mark.anchor}">{esc(mark.symbol)}'
            "</text></g>"
        )
    out.append("</svg>")
    caption = (
        "Host time since the first step began.  Only step boundaries are timed: events "
        "inside a step are spread over it in log order.  Hover for details; a step links "
        "to its row."
    )
    return '<div class="timeline">' + "".join(out) + f'<p class="caption">{esc(caption)}</p></div>'


def _step_bars(run: ScenarioRun, times: dict[int, StepTime], axis: _Axis, y: float) -> list[str]:
    first = run.outcome.first_difference
    out = []
    for number, want, got in run.pairs():
        time = times.get(number)
        if time is None:
            continue
        css = "tl-step"
        if number == first:
            css += " first-difference"
        elif differing_fields(want, got):
            css += " differs"
        elif got is None:
            css += " not-run"
        x0 = axis.x(time.host_start)
        width = max(axis.x(time.host_end) - x0, 2)
        guest = (
            f"; guest clock {time.guest_start:.3f}-{time.guest_end:.3f} s"
            if time.guest_start is not None and time.guest_end is not None
            else ""
        )
        title = (
            f"step {number}: {time.step or (want.step if want else '')} "
            f"({time.host_end - time.host_start:.3f} s{guest})"
        )
        label = (
            f'<text class="span-label" x="{x0 + width / 2:.1f}" y="{y + LANE / 2 + 4:.1f}" '
            f'text-anchor="middle">{number}</text>'
            if width > 8 * len(str(number)) + 2
            else ""
        )
        out.append(
            f'<a href="#step-{number}" class="{css}"><title>{esc(title)}</title>'
            f'<rect x="{x0:.1f}" y="{y + 3:.1f}" width="{width:.1f}" height="{LANE - 6:.0f}"'
            f' rx="2"/>{label}</a>'
        )
    return out
