"""Result formats for machines: KTAP v1 (the kernel's own test output format, read by
kunit_tool and kselftest tooling), JUnit XML (read by CI systems) and `run --json`.
Every scenario x profile is listed, one that did not run (refused by the model, not
meant for the profile, stopped by --exitfirst) as skipped with the reason.

Names come from file names, which may hold anything but `/` and NUL; in KTAP a
newline would start a line of its own and ` # SKIP` would turn a failure into a skip,
and XML 1.0 cannot carry most control characters at all.  So test names are reduced
to a safe alphabet here, and diagnostics become comment lines line by line.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.files import atomic_write
from harness.outcome.scenario import ScenarioOutcome
from harness.report.ktap import KtapTest, ktap_document, ktap_safe
from harness.report.text import failure_text, not_run_reason

# Characters XML 1.0 cannot carry (C0 controls but tab, newline, carriage return;
# surrogates; U+FFFE/U+FFFF).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """Text XML 1.0 can carry: invalid characters become U+FFFD."""
    return _XML_INVALID.sub("\ufffd", text)


def test_name(outcome: ScenarioOutcome) -> str:
    return ktap_safe(f"{outcome.scenario}@{outcome.profile}")


def ktap(outcomes: Sequence[ScenarioOutcome]) -> str:
    """KTAP v1: `ok N name` / `not ok N name`, diagnostics as `# ` lines before; a
    scenario that did not run is `ok N name # SKIP reason`."""
    return ktap_document([ktap_test(outcome) for outcome in outcomes])


def ktap_test(outcome: ScenarioOutcome) -> KtapTest:
    reason = not_run_reason(outcome)
    if reason is not None:
        return KtapTest(test_name(outcome), True, skip=reason)
    diagnostics = () if outcome.passed else tuple(failure_text(outcome).splitlines())
    if outcome.status == "host-failure":
        diagnostics = ("host failure: no verdict on the kernel", *diagnostics)
    return KtapTest(test_name(outcome), outcome.passed, diagnostics)


def junit_xml(outcomes: Sequence[ScenarioOutcome]) -> bytes:
    """The JUnit XML document for `outcomes`: a difference is a failure, a host
    failure an error, a scenario that did not run is skipped (with the reason)."""
    statuses = [o.status for o in outcomes]
    suite = ET.Element(
        "testsuite",
        name="klp-harness",
        tests=str(len(outcomes)),
        failures=str(statuses.count("difference")),
        errors=str(statuses.count("host-failure")),
        skipped=str(statuses.count("refused") + statuses.count("skipped")),
        time=f"{sum(o.seconds for o in outcomes):.3f}",
    )
    for outcome in outcomes:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=xml_safe(f"klp-harness.{outcome.profile}"),
            name=xml_safe(outcome.scenario),
            time=f"{outcome.seconds:.3f}",
        )
        if outcome.passed:
            continue
        reason = not_run_reason(outcome)
        if reason is not None:
            ET.SubElement(case, "skipped", message=xml_safe(reason))
            continue
        tag = "error" if outcome.status == "host-failure" else "failure"
        text = xml_safe(failure_text(outcome))
        element = ET.SubElement(case, tag, message=text.splitlines()[0] if text else tag)
        element.text = text
    return bytes(ET.tostring(suite, encoding="utf-8", xml_declaration=True))


def json_result(outcome: ScenarioOutcome, artifacts: Path | None) -> dict[str, object]:
    """One scenario x profile of `run --json`: its status and why, the first step
    that differs (1-based), its time and where its artifacts are."""
    reason = not_run_reason(outcome)
    if reason is None and outcome.status != "pass":
        reason = failure_text(outcome).splitlines()[0] if failure_text(outcome) else None
        if outcome.mismatch is not None and not outcome.error:
            reason = f"first difference at step {outcome.mismatch.index + 1}: "
            reason += f"{outcome.mismatch.step} ({', '.join(outcome.mismatch.fields)})"
    return {
        "scenario": outcome.scenario,
        "profile": outcome.profile,
        "status": outcome.status,
        "reason": reason,
        "first_difference": first_difference(outcome),
        "steps_observed": len(outcome.observed),
        "steps_predicted": len(outcome.predicted),
        "seconds": round(outcome.seconds, 3),
        "artifacts": str(artifacts) if artifacts is not None else None,
    }


def first_difference(outcome: ScenarioOutcome) -> int | None:
    """The 1-based number of the first step that differs: the mismatched one, or
    the one an error or a stop cut short (None: no difference)."""
    if outcome.mismatch is not None:
        return outcome.mismatch.index + 1
    if outcome.status in ("difference", "host-failure"):
        return min(len(outcome.observed) + 1, max(len(outcome.predicted), 1))
    return None


def write_json(results: Sequence[dict[str, object]], path: Path) -> None:
    """Write `run --json` results (whole or not at all)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({"results": list(results)}, indent=1) + "\n")
    except OSError as exc:
        raise HarnessError(f"cannot write JSON results to {path}: {exc.strerror or exc}") from None


def junit(outcomes: Sequence[ScenarioOutcome], path: Path) -> None:
    """Write JUnit XML to `path` (whole or not at all); a file system error is one
    HarnessError line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, junit_xml(outcomes))
    except OSError as exc:
        raise HarnessError(f"cannot write JUnit XML to {path}: {exc.strerror or exc}") from None
