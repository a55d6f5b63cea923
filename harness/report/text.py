"""Human-readable results: one line per scenario, the diff on failure, a summary."""

from __future__ import annotations

from collections.abc import Sequence

from harness.outcome.compare import diff_records, render_mismatch
from harness.outcome.scenario import ScenarioOutcome


def failure_text(outcome: ScenarioOutcome) -> str:
    """Why a scenario failed: a crash/harness error, or the first differing step."""
    parts = []
    if outcome.error:
        parts.append(outcome.error)
    if outcome.mismatch:
        parts.append(render_mismatch(outcome.mismatch, outcome.observed))
        parts.extend(outcome.diagnostics)  # what the runner saw that explains it
    elif not outcome.error and len(outcome.observed) < len(outcome.predicted):
        parts.append(f"stopped after step {len(outcome.observed)} of {len(outcome.predicted)}")
    return "\n".join(parts)


def status_word(outcome: ScenarioOutcome) -> str:
    """PASS, FAIL (a difference), ERROR (a crash, or the host's failure: the error
    says which), REFUSED (by the model, for this kernel) or SKIP."""
    match outcome.status:
        case "pass":
            return "PASS"
        case "refused":
            return "REFUSED"
        case "skipped":
            return "SKIP"
    return "ERROR" if outcome.error else "FAIL"


def not_run_reason(outcome: ScenarioOutcome) -> str | None:
    """Why a scenario did not run (refused by the model, skipped), or None."""
    if outcome.refused is not None:
        return f"refused by the model: {outcome.refused}"
    return outcome.skipped


def result_line(outcome: ScenarioOutcome) -> str:
    status = status_word(outcome)
    reason = not_run_reason(outcome)
    if reason is not None:
        return f"{status:5} {outcome.scenario} [{outcome.profile}] {reason}"
    steps = f"{len(outcome.observed)}/{len(outcome.predicted)} steps"
    line = f"{status:5} {outcome.scenario} [{outcome.profile}] {steps} {outcome.seconds:.1f}s"
    return line + (" (host failure)" if outcome.status == "host-failure" else "")


def summary(outcomes: Sequence[ScenarioOutcome]) -> str:
    """`P/N scenarios passed`, then how many differ, failed on the host, were
    refused or skipped (the N counts them all)."""
    counts = {status: sum(1 for o in outcomes if o.status == status) for status in STATUSES}
    total_time = sum(o.seconds for o in outcomes)
    parts = [f"{counts['pass']}/{len(outcomes)} scenarios passed"]
    parts += [f"{counts[s]} {label}" for s, label in STATUSES.items() if label and counts[s]]
    return ", ".join(parts) + f" ({total_time:.1f}s in scenarios)"


STATUSES = {  # status -> how a summary counts it (pass: the first number)
    "pass": "",
    "difference": "differed from the model",
    "host-failure": "failed on the host",
    "refused": "refused by the model",
    "skipped": "skipped",
}


def summary_table(outcomes: Sequence[ScenarioOutcome]) -> str:
    """Scenario x profile -> PASS/FAIL/ERROR/REFUSED/SKIP and seconds, for conformance
    runs."""
    profiles = list(dict.fromkeys(o.profile for o in outcomes))
    cells: dict[str, dict[str, str]] = {}
    for o in outcomes:
        status = status_word(o)
        cell = f"{status} {o.seconds:5.1f}s" if o.status not in ("refused", "skipped") else status
        cells.setdefault(o.scenario, {})[o.profile] = cell
    width = max([len("scenario"), *(len(name) for name in cells)])
    header = f"{'scenario':<{width}}  " + "  ".join(f"{p:<14}" for p in profiles)
    lines = [header, "-" * len(header)]
    for name, row in cells.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{row.get(p, '-'):<14}" for p in profiles))
    return "\n".join(lines)


def side_by_side(outcome: ScenarioOutcome) -> str:
    """Every step as observed in the guest, each marked against the model's prediction:
    what `make demo` shows, and what `run --show` prints for a scenario."""

    lines = [f"== {outcome.scenario} on {outcome.profile}"]
    for want, got in zip(outcome.predicted, outcome.observed, strict=False):
        diffs = diff_records(want, got)
        verdict = (
            "model == kernel" if not diffs else "DIFFERS: " + ", ".join(d.field for d in diffs)
        )
        errno_text = "ok" if got.errno == 0 else f"errno {got.errno}"
        lines.append(f"[{got.index + 1}] {got.step} -> {errno_text}   ({verdict})")
        lines.extend(f"      | {line}" for line in got.log)
        impls = ", ".join(f"{k}={v}" for k, v in sorted(got.impls.items()))
        if impls:
            lines.append(f"      runs: {impls}")
        ran = ", ".join(f"{k}={v}" for k, v in got.ran.items())
        if ran:
            lines.append(f"      ran: {ran}")
        if got.pending:
            lines.append(f"      transition pending: {got.pending}")
    return "\n".join(lines)
