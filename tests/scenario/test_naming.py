"""Scenario names reach paths and reports safely: unique artifact ids, no path
traversal, no KTAP line or directive injection, XML that parses."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.outcome.record import StepRecord
from harness.outcome.scenario import ScenarioOutcome
from harness.report.formats import junit, junit_xml, ktap
from harness.scenario.loader import load_scenario
from harness.scenario.naming import artifact_ids, safe_component
from tests.scenario.test_loader import GOOD


def scenario_at(root: Path, relative: str):  # type: ignore[no-untyped-def]
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(GOOD)
    return load_scenario(path)


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("004_replace", "004_replace"),
        (".", "scenario"),
        ("..", "scenario"),
        ("...", "scenario"),
        (".hidden", "hidden"),
        ("-rf", "rf"),
        ("a b\nc # SKIP", "a_b_c_SKIP"),
        ("caf\u00e9", "caf_"),
        ("x/../y", "x_.._y"),
    ],
)
def test_safe_component(text: str, safe: str) -> None:
    assert safe_component(text) == safe


def test_long_names_are_shortened_but_stay_distinct() -> None:
    a, b = safe_component("x" * 300 + "a"), safe_component("x" * 300 + "b")
    assert len(a) <= 100 and len(b) <= 100 and a != b


def test_same_stem_in_different_folders_gets_the_folder(tmp_path: Path) -> None:
    scenarios = [
        scenario_at(tmp_path, "seeds/004_x.toml"),
        scenario_at(tmp_path, "upstream/004_x.toml"),
        scenario_at(tmp_path, "upstream/005_y.toml"),
    ]
    assert artifact_ids(scenarios) == ["seeds-004_x", "upstream-004_x", "005_y"]


def test_deeper_folders_only_as_deep_as_needed(tmp_path: Path) -> None:
    scenarios = [
        scenario_at(tmp_path, "a/same/s.toml"),
        scenario_at(tmp_path, "b/same/s.toml"),
    ]
    assert artifact_ids(scenarios) == ["a-same-s", "b-same-s"]


@pytest.mark.parametrize("name", ["..toml", "...toml", ".toml.toml", "-.toml"])
def test_dot_names_stay_inside_the_results_dir(tmp_path: Path, name: str) -> None:
    scenario = scenario_at(tmp_path, name)
    (artifact,) = artifact_ids([scenario])
    results = tmp_path / "results" / "debian-6.1"
    assert (results / artifact).resolve().parent == results.resolve()
    assert not artifact.startswith((".", "-"))


def test_same_file_twice_is_numbered(tmp_path: Path) -> None:
    scenario = scenario_at(tmp_path, "s.toml")
    assert artifact_ids([scenario, scenario, scenario]) == ["s", "s-2", "s-3"]


def test_names_differing_only_in_unsafe_characters(tmp_path: Path) -> None:
    scenarios = [scenario_at(tmp_path, "a b.toml"), scenario_at(tmp_path, "a_b.toml")]
    ids = artifact_ids(scenarios)
    assert len(set(ids)) == 2 and all(safe_component(i) == i for i in ids)


def outcome(name: str, passed: bool = False) -> ScenarioOutcome:
    predicted = [StepRecord(0, "load p")]
    result = ScenarioOutcome(name, "debian-6.1", predicted)
    if passed:
        result.observed = list(predicted)
    else:
        result.error = "guest crashed: panic: x\nexcerpt line\rwith a CR"
    return result


@pytest.mark.parametrize(
    "name", ["evil\nok 1 injected", "x # SKIP", "a\rnot ok 9 b", "t\u2028ok 2 u", "\x00\x1b[31m"]
)
def test_ktap_names_cannot_inject_lines_or_directives(name: str) -> None:
    text = ktap([outcome(name), outcome(name, passed=True)])
    lines = text.split("\n")
    results = [ln for ln in lines if ln.startswith(("ok ", "not ok "))]
    assert len(results) == 2
    assert all(re.fullmatch(r"(not )?ok [12] [^\s#]+", ln) for ln in results), results
    others = [ln for ln in lines if ln and not ln.startswith(("ok ", "not ok ", "KTAP", "1.."))]
    assert all(ln.startswith("# ") for ln in others), others
    assert "\r" not in text


def test_junit_with_control_characters_is_valid_xml(tmp_path: Path) -> None:
    root = ET.fromstring(junit_xml([outcome("bad\x01name\x1b"), outcome("ok", passed=True)]))
    assert root.get("tests") == "2" and root.get("failures") == "1"  # a crash: a difference


def test_junit_write_error_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HarnessError) as info:
        junit([outcome("s")], blocker / "results.xml")
    assert str(info.value).startswith(f"cannot write JUnit XML to {blocker / 'results.xml'}: ")
    assert "\n" not in str(info.value)


def test_junit_under_proc_is_one_line() -> None:
    with pytest.raises(HarnessError, match=r"^cannot write JUnit XML to /proc/klp/r.xml: "):
        junit([outcome("s")], Path("/proc/klp/r.xml"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_junit_into_read_only_dir(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(HarnessError, match="cannot write JUnit XML"):
            junit([outcome("s")], tmp_path / "results.xml")
    finally:
        tmp_path.chmod(0o700)
