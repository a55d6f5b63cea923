"""Exported selftests run by upstream's own runner in a guest (`selftests --dir`), on
every profile, with the outcomes the scenarios say.

A representative set, exported with `--expect fixed`: conformance cases (a blocked
enable reversed; a failing pre_patch in the coming hook) and the reproductions of
reported bugs and findings a shell can observe (bugs/01, fixed everywhere; coexist/09,
livepatch.rst's kretprobe claim, which no kernel follows; coexist/03, finding 1, 7.3's
register_kprobe() returning 0 for a kprobe it did not arm; bugs/06, finding 5, kprobes'
disarm WARN on every profile).  Each script passes where the kernel is right and fails
exactly on the profiles with the bug; the affected ones exported `as-is` pass there (the
model predicts the bug).  A few seconds of guest time per script.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.export.kselftest import script_name
from harness.kernel.profiles import profile_names
from harness.scenario.loader import load_scenario
from tests.export.conftest import SCENARIOS

SET = (
    "bugs/01_replace_sympos_0_vs_1.toml",
    "bugs/06_kprobe_joins_kretprobe_disarm_warns.toml",
    "coexist/03_livepatch_first_then_kprobes.toml",
    "coexist/09_kretprobe_docs.toml",
    "conformance/09_blocked_enable_reversed.toml",
    "conformance/17_coming_hook_pre_patch_fails.toml",
)
# The scenarios whose scripts `--expect fixed` fails, per profile: the kernel has the bug.
FINDING_5 = "bugs/06_kprobe_joins_kretprobe_disarm_warns.toml"
AFFECTED: dict[str, tuple[str, ...]] = {
    "debian-6.1": (FINDING_5,),
    "debian-6.12": (FINDING_5,),
    "debian-7.3": ("coexist/03_livepatch_first_then_kprobes.toml", FINDING_5),
}
_RESULT = re.compile(r"^(ok|not ok) \d+ selftests: livepatch: (\S+)$", re.MULTILINE)


def _run(
    directory: Path, profile: str, results: Path, capsys: pytest.CaptureFixture[str]
) -> dict[str, bool]:
    argv = ["selftests", "--dir", str(directory), "--kernel", profile, "--ktap", "--fast-guest"]
    cli_main([*argv, "--results", str(results)])
    out, _err = capsys.readouterr()
    return {script: status == "ok" for status, script in _RESULT.findall(out)}


def _export(out: Path, profile: str, expect: str, scenarios: tuple[str, ...]) -> None:
    paths = [str(SCENARIOS / s) for s in scenarios]
    argv = ["export", "kselftest", *paths, "-o", str(out), "--kernel", profile]
    assert cli_main([*argv, "--expect", expect]) == 0


def _scripts(scenarios: tuple[str, ...]) -> set[str]:
    return {script_name(load_scenario(SCENARIOS / s)) for s in scenarios}


@pytest.mark.vm
@pytest.mark.parametrize("profile", profile_names())
def test_exported_selftests_fail_exactly_where_the_bugs_are(
    profile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _export(tmp_path / "fixed", profile, "fixed", SET)
    outcomes = _run(tmp_path / "fixed", profile, tmp_path / "results", capsys)
    assert set(outcomes) == _scripts(SET), outcomes
    failed = {script for script, ok in outcomes.items() if not ok}
    assert failed == _scripts(AFFECTED[profile]), outcomes
    # the affected scripts as the kernel is: the model predicts its bug, they pass
    _export(tmp_path / "as-is", profile, "as-is", AFFECTED[profile])
    outcomes = _run(tmp_path / "as-is", profile, tmp_path / "results", capsys)
    assert set(outcomes) == _scripts(AFFECTED[profile]) and all(outcomes.values()), outcomes
