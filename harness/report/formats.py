"""Result formats for machines: KTAP v1 (the kernel's own test output format, read by
kunit_tool and kselftest tooling) and JUnit XML (read by CI systems).

Names come from file names, which may hold anything but `/` and NUL; in KTAP a
newline would start a line of its own and ` # SKIP` would turn a failure into a skip,
and XML 1.0 cannot carry most control characters at all.  So test names are reduced
to a safe alphabet here, and diagnostics become comment lines line by line.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.files import atomic_write
from harness.outcome.scenario import ScenarioOutcome
from harness.report.ktap import KtapTest, ktap_document, ktap_safe
from harness.report.text import failure_text

# Characters XML 1.0 cannot carry (C0 controls but tab, newline, carriage return;
# surrogates; U+FFFE/U+FFFF).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """Text XML 1.0 can carry: invalid characters become U+FFFD."""
    return _XML_INVALID.sub("\ufffd", text)


def test_name(outcome: ScenarioOutcome) -> str:
    return ktap_safe(f"{outcome.scenario}@{outcome.profile}")


def ktap(outcomes: Sequence[ScenarioOutcome]) -> str:
    """KTAP v1: `ok N name` / `not ok N name`, diagnostics as `# ` lines before."""
    return ktap_document([ktap_test(outcome) for outcome in outcomes])


def ktap_test(outcome: ScenarioOutcome) -> KtapTest:
    diagnostics = () if outcome.passed else tuple(failure_text(outcome).splitlines())
    return KtapTest(test_name(outcome), outcome.passed, diagnostics)


def junit_xml(outcomes: Sequence[ScenarioOutcome]) -> bytes:
    """The JUnit XML document for `outcomes`."""
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
            classname=xml_safe(f"klp-harness.{outcome.profile}"),
            name=xml_safe(outcome.scenario),
            time=f"{outcome.seconds:.3f}",
        )
        if outcome.passed:
            continue
        tag = "error" if outcome.error else "failure"
        text = xml_safe(failure_text(outcome))
        element = ET.SubElement(case, tag, message=text.splitlines()[0] if text else tag)
        element.text = text
    return bytes(ET.tostring(suite, encoding="utf-8", xml_declaration=True))


def junit(outcomes: Sequence[ScenarioOutcome], path: Path) -> None:
    """Write JUnit XML to `path` (whole or not at all); a file system error is one
    HarnessError line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, junit_xml(outcomes))
    except OSError as exc:
        raise HarnessError(f"cannot write JUnit XML to {path}: {exc.strerror or exc}") from None
