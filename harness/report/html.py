"""The HTML report of a run: a scenario x profile matrix and one page per scenario.

Text reports (report.txt, KTAP, JUnit) say *that* a step differed; a livepatch engineer
then wants to see the state around it: which patches were stacked on each function and
which one ran, what sysfs said, the kernel's lines, and how transitions, retries and
actors moved over time.  These pages show that from the artifacts alone
(harness/report/artifacts.py), so they can be made for any results directory, again
and again while a run goes (`render_scenario` for the scenario that just finished,
`render_index` for the matrix), and read from a CI artifact opened as files.

Hence: static files, no network (no CDN, fonts or scripts from elsewhere), CSS inline
in every page, relative links only, and no JavaScript.  Every piece of text from a
run (kernel lines, step text, error messages) is escaped, including in attributes:
a kernel log is untrusted input.  Stable ids and classes (`#matrix`, `.cell.<status>`,
`#step-N`, `.first-difference`, `.funcstack[data-func]`, `.layer[data-patch]`,
`.timeline`) are the interface that DOM tests and readers' bookmarks rely on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.files import atomic_write
from harness.outcome.compare import errno_name
from harness.report.artifact_types import (
    COMPARED_FIELDS,
    STATUSES,
    Record,
    ScenarioRun,
    differing_fields,
    log_only_lines,
)
from harness.report.artifacts import natural_key, read_outcomes, read_run, read_scenario
from harness.report.markup import link, page, text
from harness.report.step_state import step_state
from harness.report.timeline import timeline_svg

PAGE = "index.html"
STATUS_TEXT = {
    "pass": "pass",
    "difference": "difference",
    "refused": "refused",
    "skipped": "skipped",
    "host-failure": "host failure",
    "incomplete": "incomplete",
}


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


# ---- the matrix ---------------------------------------------------------------------------


def index_html(title: str, runs: Sequence[ScenarioRun]) -> str:
    """The run's page: every scenario x profile, each cell linking to its page."""
    profiles = sorted({r.profile for r in runs}, key=natural_key)
    scenarios = sorted({r.scenario for r in runs}, key=natural_key)
    cells = {(r.scenario, r.profile): r for r in runs}
    counts = {s: sum(1 for r in runs if r.outcome.status == s) for s in STATUSES}
    summary = " · ".join(
        f'<span class="status {s}">{counts[s]} {STATUS_TEXT[s]}</span>'
        for s in STATUSES
        if counts[s]
    )
    head = "".join(f'<th scope="col">{text(p)}</th>' for p in profiles)
    rows = []
    for scenario in scenarios:
        row = [f'<th scope="row">{text(scenario)}</th>']
        for profile in profiles:
            run = cells.get((scenario, profile))
            row.append(_cell(run) if run else '<td class="cell none">—</td>')
        rows.append(f'<tr data-scenario="{text(scenario)}">{"".join(row)}</tr>')
    table = (
        f'<div class="scroll"><table id="matrix"><thead><tr><th>scenario</th>{head}</tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
        if runs
        else '<p class="note">No scenario has finished yet.</p>'
    )
    problems = [_problem(r) for r in runs if r.outcome.status not in ("pass", "skipped")]
    listing = (
        f'<section id="problems"><h2>Not passing</h2><ul>{"".join(problems)}</ul></section>'
        if problems
        else ""
    )
    body = (
        f"<header><h1>klp-harness run {text(title)}</h1><p>{summary}</p></header>"
        f"<main>{table}{listing}</main>"
    )
    return page(f"klp-harness {title}", body)


def _why(run: ScenarioRun) -> str:
    """The first line of the reason or error ("" if none)."""
    why = (run.outcome.reason or run.outcome.error or "").strip()
    return why.splitlines()[0] if why else ""


def _cell(run: ScenarioRun) -> str:
    status = run.outcome.status
    href = link(run.profile, run.scenario, PAGE)
    tip = f' title="{text(_why(run))}"' if _why(run) else ""
    difference = ""
    if run.outcome.first_difference is not None:
        n = run.outcome.first_difference
        difference = f' <a class="first-difference-link" href="{href}#step-{n}">step {n}</a>'
    return (
        f'<td class="cell {status}" data-status="{status}"{tip}>'
        f'<a href="{href}">{STATUS_TEXT[status]}</a>'
        f' <span class="time">{_seconds(run.outcome.seconds)}</span>{difference}</td>'
    )


def _problem(run: ScenarioRun) -> str:
    status = run.outcome.status
    return (
        f'<li><a href="{link(run.profile, run.scenario, PAGE)}">{text(run.scenario)} '
        f'[{text(run.profile)}]</a> <span class="status {status}">{STATUS_TEXT[status]}</span>'
        f"{': ' + text(_why(run)) if _why(run) else ''}</li>"
    )


# ---- a scenario's page --------------------------------------------------------------------


def scenario_html(run: ScenarioRun) -> str:
    """One scenario on one profile: summary, reproduce command, timeline, steps, files."""
    outcome = run.outcome
    first = outcome.first_difference
    jump = (
        f' · <a class="jump" href="#step-{first}">first difference: step {first}</a>'
        if first
        else ""
    )
    observed = (
        f" · {len(run.observed)} of {len(run.predicted)} steps observed" if run.predicted else ""
    )
    header = (
        f'<header><p><a href="../../{PAGE}">← all scenarios</a></p>'
        f"<h1>{text(run.scenario)} <small>on {text(run.profile)}</small></h1>"
        f'<p><span class="status {outcome.status}" id="status">{STATUS_TEXT[outcome.status]}'
        f"</span> · {_seconds(outcome.seconds)}{observed}{jump}</p></header>"
    )
    sections = [_summary(run), _reproduce(run), _timeline(run), _steps(run), _artifacts(run)]
    return page(
        f"{run.scenario} [{run.profile}]", header + "<main>" + "".join(sections) + "</main>"
    )


def _summary(run: ScenarioRun) -> str:
    parts = []
    if run.outcome.reason:
        parts.append(f'<p class="reason">{text(run.outcome.reason)}</p>')
    if run.outcome.error and run.outcome.error != run.report_text:
        parts.append(f'<pre class="error">{text(run.outcome.error)}</pre>')
    if run.problems:
        items = "".join(f"<li>{text(p)}</li>" for p in run.problems)
        parts.append(f'<p class="note">Could not read all artifacts:</p><ul>{items}</ul>')
    if run.report_text:
        parts.append(
            "<details open><summary>report.txt</summary>"
            f'<pre class="report">{text(run.report_text.rstrip())}</pre></details>'
        )
    if not run.outcome.recorded:
        parts.append(
            '<p class="note" id="derived">This run wrote no outcome.json: its status comes '
            "from report.txt and the predicted and observed records; its time, reproduce "
            "command and step timestamps were not recorded.</p>"
        )
    return f'<section id="summary">{"".join(parts)}</section>' if parts else ""


def _reproduce(run: ScenarioRun) -> str:
    if run.outcome.command:
        body = f'<pre class="command"><code>{text(run.outcome.command)}</code></pre>'
    else:
        body = (
            '<p class="note">Not recorded by this run (no outcome.json); it is '
            f"<code>klp-harness run --kernel {text(run.profile)} SCENARIO.toml</code> with "
            f"the scenario file of <code>{text(run.scenario)}</code>.</p>"
        )
    return f'<section id="reproduce"><h2>Reproduce</h2>{body}</section>'


def _timeline(run: ScenarioRun) -> str:
    if run.has_timeline:
        body = timeline_svg(run)
    else:
        why = (
            "outcome.json has no step timestamps"
            if run.outcome.recorded
            else "this run wrote no outcome.json, so its steps have no timestamps"
        )
        body = f'<p class="note" id="no-timeline">No timeline: {why}.</p>'
    return f'<section id="time"><h2>Timeline</h2>{body}</section>'


def _steps(run: ScenarioRun) -> str:
    if not run.predicted and not run.observed:
        return ""
    note = (
        ""
        if run.has_stacks
        else '<p class="note" id="no-stacks">No func stacks: the predicted records of this '
        "run have no <code>stacks</code> (runs before func stacks were recorded); "
        "the <code>impls</code> rows say what ran.</p>"
    )
    legend = (
        '<p class="legend">Fields empty on both sides are left out.  Func stacks are drawn '
        'bottom (the original) to top; <span class="layer ran">ran</span> is the '
        "implementation the kernel ran (observed <code>impls</code>), "
        '<span class="layer predicted">model</span> the one the model predicted, '
        '<span class="layer nop">nop</span> an atomic replace\'s nop.</p>'
    )
    groups = "".join(_step(run, n, want, got) for n, want, got in run.pairs())
    table = (
        '<div class="scroll"><table id="steps"><colgroup><col class="c-field">'
        '<col class="c-side"><col class="c-side"></colgroup><thead><tr><th>field</th>'
        f"<th>model (predicted)</th><th>kernel (observed)</th></tr></thead>{groups}</table></div>"
    )
    return f'<section id="steps-section"><h2>Steps</h2>{note}{legend}{table}</section>'


def _step(run: ScenarioRun, number: int, want: Record | None, got: Record | None) -> str:
    diffs = differing_fields(want, got)
    css = "step"
    if number == run.outcome.first_difference:
        css += " first-difference"
    if diffs:
        css += " differs"
    if got is None:
        css += " not-run"
        verdict = "not run"
    elif want is None:
        verdict = "no prediction"
    else:
        verdict = "differs: " + ", ".join(diffs) if diffs else "matches"
    either = want or got
    step = either.step if either else ""
    rows = [
        f'<tr class="step-head"><th colspan="3"><a class="step-number" href="#step-{number}">'
        f"{number}</a> <code>{text(step)}</code> "
        f'<span class="verdict">{text(verdict)}</span></th></tr>'
    ]
    for name in COMPARED_FIELDS:
        rows.append(_field_row(name, want, got, name in diffs))
    rows.append(
        f'<tr class="step-detail"><td colspan="3"><div class="detail">'
        f"{step_state(want, got)}</div></td></tr>"
    )
    return f'<tbody class="{css}" id="step-{number}">{"".join(rows)}</tbody>'


def _field_row(name: str, want: Record | None, got: Record | None, differs: bool) -> str:
    ours = want.value(name) if want else None
    theirs = got.value(name) if got else None
    if name != "errno" and not ours and not theirs:  # errno 0 is worth showing
        return ""
    cells = []
    for side, value, other, record in (
        ("predicted", ours, theirs, want),
        ("observed", theirs, ours, got),
    ):
        if record is None:
            cells.append(f'<td class="{side} absent">—</td>')
        else:
            cells.append(f'<td class="{side}">{_value(name, value, other, differs)}</td>')
    css = "field differs" if differs else "field"
    return f'<tr class="{css}" data-field="{name}"><th>{name}</th>{"".join(cells)}</tr>'


def _value(name: str, value: object, other: object, differs: bool) -> str:
    """One side of a compared field; what the other side lacks is marked `only`."""
    if name == "errno" and isinstance(value, int):
        return text(errno_name(value))
    if name == "log" and isinstance(value, tuple):
        lines = [str(line) for line in value]
        others = [str(line) for line in other] if isinstance(other, tuple) else []
        only = log_only_lines(lines, others) if differs else set()
        return _lines([(line, i in only) for i, line in enumerate(lines)]) or "(none)"
    if isinstance(value, Mapping):
        theirs = other if isinstance(other, Mapping) else {}
        pairs = [(f"{k} = {v}", differs and theirs.get(k) != v) for k, v in value.items()]
        return _lines(pairs) or "(none)"
    if value in (None, ""):
        return "(none)"
    return text(value)


def _lines(lines: Sequence[tuple[str, bool]]) -> str:
    return "".join(
        f'<span class="line{" only" if only else ""}">{text(line)}</span>' for line, only in lines
    )


def _artifacts(run: ScenarioRun) -> str:
    items = "".join(
        f'<li><a href="{link(*a.split("/"))}">{text(a)}</a></li>' for a in run.artifacts
    )
    return f'<section id="artifacts"><h2>Raw artifacts</h2><ul>{items or "(none)"}</ul></section>'


# ---- writing ------------------------------------------------------------------------------


def render_scenario(results: Path, profile: str, scenario: str) -> Path:
    """Write `<results>/<profile>/<scenario>/index.html` from that directory's artifacts
    (call it when the scenario has finished, then `render_index`)."""
    for name in (profile, scenario):
        if not name or "/" in name or name in (".", ".."):
            raise HarnessError(f"{name!r}: not a profile or scenario directory name")
    run = read_scenario(results / profile / scenario)
    path = run.directory / PAGE
    atomic_write(path, scenario_html(run))
    return path


def render_index(results: Path) -> Path:
    """Write `<results>/index.html`, the matrix of every scenario found so far."""
    runs = read_outcomes(results)
    path = results / PAGE
    atomic_write(path, index_html(results.name, runs))
    return path


def render_run(results: Path) -> Path:
    """Write every scenario's page and the matrix; returns the matrix's path."""
    runs = read_run(results)
    for run in runs:
        atomic_write(run.directory / PAGE, scenario_html(run))
    path = results / PAGE
    atomic_write(path, index_html(results.name, runs))
    return path
