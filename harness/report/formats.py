"""Result formats for machines: KTAP v1 (the kernel's own test output format, read by
kunit_tool and kselftest tooling) and JUnit XML (read by CI systems)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from harness.report.text import failure_text
from harness.runner.session import ScenarioOutcome


def test_name(outcome: ScenarioOutcome) -> str:
    return f"{outcome.scenario}@{outcome.profile}"


def ktap(outcomes: Sequence[ScenarioOutcome]) -> str:
    """KTAP v1: `ok N name` / `not ok N name`, diagnostics as `# ` lines before."""
    lines = ["KTAP version 1", f"1..{len(outcomes)}"]
    for number, outcome in enumerate(outcomes, 1):
        if not outcome.passed:
            lines.extend(f"# {line}" for line in failure_text(outcome).splitlines())
        status = "ok" if outcome.passed else "not ok"
        lines.append(f"{status} {number} {test_name(outcome)}")
    return "\n".join(lines) + "\n"


def junit(outcomes: Sequence[ScenarioOutcome], path: Path) -> None:
    failures = sum(1 for o in outcomes if o.mismatch and not o.error)
    errors = sum(1 for o in outcomes if o.error)
    suite = ET.Element(
        "testsuite",
        name="klp-harness",
        tests=str(len(outcomes)),
        failures=str(failures),
        errors=str(errors),
        time=f"{sum(o.seconds for o in outcomes):.3f}",
    )
    for outcome in outcomes:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"klp-harness.{outcome.profile}",
            name=outcome.scenario,
            time=f"{outcome.seconds:.3f}",
        )
        if outcome.passed:
            continue
        tag = "error" if outcome.error else "failure"
        text = failure_text(outcome)
        element = ET.SubElement(case, tag, message=text.splitlines()[0] if text else tag)
        element.text = text
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
