"""A kernel report the model predicts (record.py `report`): the runner records it and
ends the scenario there; an unpredicted one stays the crash it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.guest.crash import find_crash
from harness.guest.errors import GuestCrashed
from harness.guest.shell import CommandResult
from harness.outcome.record import StepRecord
from harness.runner.session import ScenarioSession
from harness.scenario.loader import load_scenario

DATA = Path(__file__).parents[1] / "data"
WARNING = "warning at kernel/trace/ftrace.c:7660 arch_ftrace_ops_list_func"


class WarningGuest:
    """A guest whose every command meets the recorded 6.1 WARN."""

    console_log = DATA / "console-debian-6.1-ftrace-null-func.log"

    def run(self, cmd: str, timeout: float = 30.0, check: bool = False) -> CommandResult:
        crash = find_crash(self.console_log.read_text())
        assert crash is not None
        raise GuestCrashed("kernel report: ...", crash.excerpt, crash, fatal=False)

    def put_file(self, local: Path, remote: str) -> None:
        raise AssertionError

    def feed(
        self, local: Path, cmd: str, timeout: float = 120.0, check: bool = False
    ) -> CommandResult:
        raise AssertionError

    def check_alive(self) -> None:
        pass


def session(tmp_path: Path) -> ScenarioSession:
    path = tmp_path / "t.toml"
    path.write_text('description = "t"\nsteps = ["load lp"]\n'
                    '[[patch]]\nname = "lp"\n[[patch.object]]\nname = "vmlinux"\n'
                    'funcs = ["cmdline_proc_show"]\n')  # fmt: skip
    return ScenarioSession(WarningGuest(), load_scenario(path), "debian-6.1", log_cleared=True)


def test_a_predicted_warning_ends_the_scenario_as_predicted(tmp_path: Path) -> None:
    outcome = session(tmp_path).run([StepRecord(0, "load lp", report=WARNING)])
    assert outcome.passed and outcome.observed[0].report == WARNING


def test_another_warning_than_predicted_is_a_mismatch(tmp_path: Path) -> None:
    other = "warning at kernel/trace/ftrace.c:1 elsewhere"
    outcome = session(tmp_path).run([StepRecord(0, "load lp", report=other)])
    assert not outcome.passed and outcome.mismatch is not None
    assert outcome.mismatch.diffs[0].field == "report"


def test_an_unpredicted_warning_is_a_crash(tmp_path: Path) -> None:
    with pytest.raises(GuestCrashed):
        session(tmp_path).run([StepRecord(0, "load lp")])


LINE = (
    "<4>[   75.515131] WARNING: CPU: 0 PID: 140 at kernel/trace/ftrace.c:7660 "
    "arch_ftrace_ops_list_func+0x193/0x1d0\n"
)


class LateWarningGuest(WarningGuest):
    """The step's command returns; its kernel log has the WARN, the console not yet.
    `late`: the WARN came from the snapshot's own reads, after its first log dump."""

    late = False

    def run(self, cmd: str, timeout: float = 30.0, check: bool = False) -> CommandResult:
        assert "@@late" in cmd or not self.late  # asked for only when a report is predicted
        kmsg, late = ("", LINE) if self.late else (LINE, "")
        out = (
            f"@@action\n0\n@@retries\n0\n@@kmsg\n{kmsg}"
            f"@@sysfs\n@@modules\n@@impls\n@@actors\n@@late\n{late}@@taint\n512\n"
        )
        return CommandResult(0, out, "")


def test_a_warning_in_the_steps_kernel_log_counts_as_seen(tmp_path: Path) -> None:
    s = session(tmp_path)
    s.guest = LateWarningGuest()
    outcome = s.run([StepRecord(0, "load lp", report=WARNING)])
    assert outcome.passed and outcome.observed == [StepRecord(0, "load lp", report=WARNING)]
    unpredicted = session(tmp_path)
    unpredicted.guest = LateWarningGuest()
    outcome = unpredicted.run([StepRecord(0, "load lp")])
    assert outcome.mismatch is not None and "report" in {d.field for d in outcome.mismatch.diffs}


def test_a_warning_the_snapshots_reads_cause_is_seen_when_predicted(tmp_path: Path) -> None:
    s = session(tmp_path)
    guest = LateWarningGuest()
    guest.late = True
    s.guest = guest
    outcome = s.run([StepRecord(0, "load lp", report=WARNING)])
    assert outcome.passed and outcome.observed == [StepRecord(0, "load lp", report=WARNING)]
