"""Scenario items in pytest map outcomes as `klp-harness run` maps exit codes: a
difference fails, a host failure is an error, a scenario refused by the model or not
meant for the kernel is skipped with the reason.  pytest runs in a child on scenario
files of the test's own, guests stood in for (tests/runner/fakes.py)."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.runner.fakes import ONLY_612, PASSING, REFUSED, write_scenarios

ROOT = Path(__file__).resolve().parents[2]

CONFTEST = """
from harness import pytest_plugin
from harness.modules.build import BuildResult
from harness.runner import prepare
from tests.runner.fakes import PROFILES, FakeManager, Plan

FakeManager.plan = Plan(statuses={"lost": "host-failure", "differs": "difference"})
prepare.build_modules = lambda *_a, **_k: BuildResult()
prepare.check_bodies = lambda *_a, **_k: None


def prepared(self):
    return prepare.prepare([self.scenario], PROFILES[self.name], echo=lambda _t: None)[0]


pytest_plugin.ScenarioItem.prepared = prepared
pytest_plugin.guest_manager = lambda _config, profile: FakeManager(profile)
"""


def test_outcomes_map_to_pass_fail_error_and_skip(tmp_path: Path) -> None:
    write_scenarios(
        tmp_path / "scenarios",
        passes=PASSING, differs=PASSING, lost=PASSING, refused=REFUSED, only612=ONLY_612,
    )  # fmt: skip
    (tmp_path / "conftest.py").write_text(CONFTEST)
    report = tmp_path / "junit.xml"
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
         "--klp-kernel", "debian-6.1", "--klp-kernel", "debian-6.12",
         f"--junitxml={report}", "scenarios"],
        cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert child.returncode == 1, child.stdout + child.stderr
    cases = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        tags = [(c.tag, c.get("message", "")) for c in case if c.tag != "properties"]
        stem = case.get("classname", "").removesuffix(".toml").split(".")[-1]  # scenarios.x.toml
        name = f"{stem}::{case.get('name')}"
        cases[name] = tags[0] if tags else ("passed", "")
    assert len(cases) == 10, cases  # every scenario on both kernels, none left out
    assert cases["passes::debian-6.1"] == ("passed", "")
    assert cases["differs::debian-6.12"][0] == "failure"
    assert cases["lost::debian-6.1"][0] == "error"
    assert "host failure (no verdict on the kernel)" in cases["lost::debian-6.1"][1]
    tag, reason = cases["refused::debian-6.12"]
    assert tag == "skipped" and "refused by the model: step 2: `load lp` would wait" in reason
    tag, reason = cases["only612::debian-6.1"]
    assert (tag, reason) == ("skipped", "not for debian-6.1 (kernels = debian-6.12)")
    assert cases["only612::debian-6.12"] == ("passed", "")
