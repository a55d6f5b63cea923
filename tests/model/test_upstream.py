"""Conformance of the reference model with upstream's own selftests (no VM).

For each of the 22 cases of Linux 6.1's tools/testing/selftests/livepatch, the model's
predicted log lines of the whole scenario, concatenated, must equal upstream's expected
transcript verbatim.  The transcripts are data copied from upstream's scripts
(tests/data/upstream-transcripts/README.md); the model never produces them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.model import predict, predicted_log
from harness.scenario.loader import load_scenario

ROOT = Path(__file__).parents[1]
SCENARIOS = ROOT / "scenarios" / "upstream"
TRANSCRIPTS = ROOT / "data" / "upstream-transcripts"
CASES = sorted(p.stem for p in TRANSCRIPTS.glob("*.txt"))


def test_all_22_cases_are_present() -> None:
    assert len(CASES) == 22
    assert sorted(p.stem for p in SCENARIOS.glob("*.toml")) == CASES


@pytest.mark.parametrize("case", CASES)
def test_transcript_matches_upstream(case: str) -> None:
    scenario = load_scenario(SCENARIOS / f"{case}.toml")
    expected = (TRANSCRIPTS / f"{case}.txt").read_text().splitlines()
    assert predicted_log(scenario) == expected


@pytest.mark.parametrize("case", CASES)
def test_upstream_cases_settle_clean(case: str) -> None:
    """Every upstream case ends with nothing loaded and nothing in transition, and
    every step upstream expects to succeed does (only the expected failures fail)."""
    records = predict(load_scenario(SCENARIOS / f"{case}.toml"))
    assert records[-1].modules == {}
    assert records[-1].sysfs == {}
    assert all(r.pending is None for r in records if r.step.startswith("disable"))
    failing = {(r.step, r.errno) for r in records if r.errno}
    assert failing <= EXPECTED_FAILURES.get(case, set())


EXPECTED_FAILURES = {
    "09_callbacks_pre_patch_enodev": {("load test_klp_callbacks_demo pre_patch_ret=-19", 19)},
    "10_callbacks_coming_pre_patch_enodev": {("load test_klp_callbacks_mod", 19)},
    "18_state_incompatible_cumulative": {("load test_klp_state", 22)},
    "22_ftrace_enabled": {("load test_klp_livepatch", 16), ("sysctl ftrace_enabled=0", 16)},
}


def test_busy_target_stays_pending_until_reversed() -> None:
    records = predict(load_scenario(SCENARIOS / "12_callbacks_busy_target.toml"))
    assert [r.pending for r in records] == [None] + ["test_klp_callbacks_demo"] * 3 + [None] * 3
    assert records[1].sysfs["test_klp_callbacks_demo/transition"] == "1"


def test_sysfs_object_patched_follows_the_target() -> None:
    records = predict(load_scenario(SCENARIOS / "20_sysfs_object_patched.toml"))
    key = "test_klp_callbacks_demo/test_klp_callbacks_mod/patched"
    assert [r.sysfs.get(key) for r in records] == ["0", "1", "0", None, None]


def test_sysfs_layout_6_1_and_6_12() -> None:
    scenario = load_scenario(SCENARIOS / "19_sysfs.toml")
    want_61 = {
        "test_klp_livepatch/enabled": "1",
        "test_klp_livepatch/force": "<write-only>",
        "test_klp_livepatch/transition": "0",
        "test_klp_livepatch/vmlinux/patched": "1",
    }
    assert predict(scenario, "6.1")[0].sysfs == want_61
    assert predict(scenario, "6.12")[0].sysfs == {**want_61, "test_klp_livepatch/replace": "0"}
