"""Run one scenario in a prepared guest and compare each step with the model.

`ScenarioSession.run` is the heart of the harness: copy the scenario's modules in,
then per step: perform it, wait as the prediction says, observe, compare; stop at the
first difference.  Preparing and cleaning the guest between scenarios lives in
`harness.runner.reset`.
"""

from __future__ import annotations

import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.guest.errors import GuestCrashed
from harness.guest.shell import GuestLike
from harness.model import retries
from harness.model.check import observed_check
from harness.modules.strip import without_debug_info
from harness.outcome.compare import Mismatch, diff_records
from harness.outcome.record import StepRecord
from harness.outcome.scenario import ScenarioOutcome
from harness.runner import observe, trigger, waits
from harness.runner.actions import (
    EXTRA_DIR,
    TOOL_TIMEOUT,
    action_errno,
    action_script,
    parse_report,
)
from harness.runner.protocol import REPORT
from harness.scenario.step_types import Check, Step, Trigger, Unload, Wait, format_step
from harness.scenario.types import PatchModule, Scenario

# Unpack the archive on stdin into an emptied extra/ (a resumed guest's is empty: no
# program starts) and clear the kernel log.  Static busybox: it starts several times
# faster than dynamic programs.  No depmod: loads name the module's file.
INSTALL = (
    "read -r __release < /proc/sys/kernel/osrelease; "
    f'for f in {EXTRA_DIR}/*; do [ -e "$f" ] && rm -rf {EXTRA_DIR} && break; done; '
    f"{{ [ -d {EXTRA_DIR} ] || mkdir -p {EXTRA_DIR}; }} && "
    f"busybox tar -x -C {EXTRA_DIR} && {observe.KMSG_DUMP} > /dev/null"
)


def install_modules(guest: GuestLike, modules: dict[str, Path]) -> None:
    """Replace the guest's extra/ modules with this scenario's, so a load finds
    exactly the scenario's build of each module, and clear the kernel log (the
    scenario's log starts empty).

    The modules travel as one tar archive (a copy costs a round trip, a module set is
    several), without their debug information: it is most of a module's size, the
    kernel ignores it, and the host keeps the unstripped build."""
    with tempfile.TemporaryDirectory(prefix="klp-modules-") as tmp:
        archive = Path(tmp) / "modules.tar"
        with tarfile.open(archive, "w") as tar:
            for name, ko in sorted(modules.items()):
                tar.add(without_debug_info(ko, Path(tmp)), arcname=f"{name}.ko")
        guest.feed(archive, INSTALL, check=True, timeout=60)


Progress = Callable[[int, str], None]


def _mismatch(want: StepRecord, got: StepRecord) -> Mismatch | None:
    diffs = diff_records(want, got)
    return Mismatch(got.index, got.step, tuple(diffs)) if diffs else None


class ScenarioSession:
    """Runs the steps of one scenario on a guest that `reset` has cleaned."""

    def __init__(
        self, guest: GuestLike, scenario: Scenario, profile: str, log_cleared: bool = False
    ) -> None:
        self.guest = guest
        self.scenario = scenario
        self.profile = profile
        self.log = observe.KernelLog(guest)
        self.log_cleared = log_cleared  # install_modules cleared the log: nothing to skip
        # the scenario's own modules and the modules of the kernel its patches name
        self.module_names = [m.name for m in scenario.modules] + scenario.real_objects()
        self.funcs = scenario.patched_funcs()
        # module files whose own lines the scenario does not declare (not compared)
        self.undeclared = [
            m.name
            for m in scenario.external
            if not (m.callback_lines if isinstance(m, PatchModule) else m.log_init_exit)
        ]
        self.watched = trigger.watched(scenario)  # functions trigger steps observe
        self.replaced = trigger.replacements(scenario)  # module files' replacements
        self.spinners = [t.name for t in scenario.targets if t.spinner is not None]
        self.procs = [p.name for p in scenario.processes]
        self.outcome: ScenarioOutcome | None = None  # set by run()

    def run(
        self, predicted: Sequence[StepRecord], progress: Progress | None = None
    ) -> ScenarioOutcome:
        outcome = ScenarioOutcome(self.scenario.name, self.profile, list(predicted))
        self.outcome = outcome  # kept if a step raises: the steps observed before it
        started = time.monotonic()
        try:
            if not self.log_cleared:
                self.log.skip_to_end()
            # a prediction ends early at a kernel report (record.py `report`)
            steps = zip(self.scenario.steps, predicted, strict=False)
            for index, (step, want) in enumerate(steps):
                if progress:
                    progress(index, format_step(step))
                got = self.run_reporting_step(index, step, want)
                outcome.observed.append(got)
                if got.report:
                    outcome.mismatch = _mismatch(want, got)
                    break
                self.guest.check_alive()
                # the lines the kernel's retries log, by how many ran (model/retries.py)
                ran = [record.retries for record in outcome.observed]
                want = retries.with_due_lines(outcome.predicted, ran, index)
                outcome.predicted[index] = want
                outcome.mismatch = _mismatch(want, got)
                if outcome.mismatch is not None:
                    if got.pending and not want.pending:
                        outcome.diagnostics = [
                            "tasks not yet in the transition's target state:",
                            *(f"  {line}" for line in waits.unpatched_tasks(self.guest)),
                        ]
                    break
        finally:
            outcome.kernel_log = [r.line for r in self.log.all_records]
            outcome.seconds = time.monotonic() - started
        return outcome

    def run_reporting_step(self, index: int, step: Step, want: StepRecord) -> StepRecord:
        """`run_step`, where a report the kernel survives (a WARN) ends the step with
        a record of it: seen in the step's kernel log, or by the console watcher when
        the model predicted one (otherwise that is the crash it is)."""
        try:
            got = self.run_step(index, step, want)
        except GuestCrashed as exc:
            if exc.fatal or not want.report or exc.crash is None:
                raise
            return StepRecord(index, format_step(step), report=observe.report_of(exc.crash))
        if got.report:  # in the step's kernel log before the serial console showed it
            return StepRecord(got.index, got.step, report=got.report)
        return got

    def run_step(self, index: int, step: Step, want: StepRecord) -> StepRecord:
        """Perform the step, wait as the model predicts, observe: one round trip."""
        parts = [observe.UPTIME_BEFORE, waits.RETRIES_BEFORE]
        if index == 0 and self.watched:
            parts.append(trigger.setup_script(self.watched))
        if isinstance(step, Unload) and want.errno == 0:
            parts.append(waits.refcnt_zero_script(step.module))
        parts += [action_script(self.scenario, step), REPORT]
        if isinstance(step, Wait) and step.retries is not None and self.outcome is not None:
            ran = [record.retries for record in self.outcome.observed] + [None]
            more = retries.retries_to_wait(self.outcome.predicted, ran, index, step.retries)
            parts.append(waits.retries_script(more))
        parts += [self.observe_script(want), observe.UPTIME_AFTER]
        started = time.time()
        self.guest.activity = f"step {index + 1} ({format_step(step)})"  # for a frozen guest
        out = self.guest.run("; ".join(parts), timeout=TOOL_TIMEOUT + 2 * waits.SETTLE_TIMEOUT)
        ended = time.time()
        sections = observe.split_sections(out.stdout)
        status, message = parse_report(sections["action"])
        errno_value = action_errno(step, status, message)
        if isinstance(step, Trigger) and status != 0 and self.outcome is not None:
            self.outcome.diagnostics.append(trigger.failed(index, status, message))
        record = self.record(index, step, errno_value, sections)
        record.started, record.ended = started, ended
        record.guest_started, record.guest_ended = observe.parse_uptime(sections["uptime"])
        return record

    def observe(self, index: int, step: Step, errno_value: int, want: StepRecord) -> StepRecord:
        """Wait as the model predicts, then observe, without performing a step."""
        out = self.guest.run(self.observe_script(want), timeout=waits.SETTLE_TIMEOUT + 30)
        return self.record(index, step, errno_value, observe.split_sections(out.stdout))

    def observe_script(self, want: StepRecord) -> str:
        """Any step can start or end a transition (a load, a write, a release of a
        parked task), so every step waits for the state the model predicts; when it
        is already there the wait costs nothing.  A wait that runs out is not an error
        here: the snapshot then shows the difference."""
        return "; ".join(
            [
                waits.settle_script(want),
                waits.RETRIES_AFTER,
                observe.snapshot_script(
                    self.module_names, self.funcs, self.spinners, self.procs, bool(want.report)
                ),
            ]
        )

    def record(
        self, index: int, step: Step, errno_value: int, sections: dict[str, str]
    ) -> StepRecord:
        """The step as observed, on the model's terms (harness/outcome/record.py)."""
        texts = [r.text for r in self.log.feed(sections["kmsg"])]
        sysfs = observe.parse_sysfs(sections["sysfs"])
        pending = next(
            (p.split("/")[0] for p, v in sysfs.items() if p.endswith("/transition") and v == "1"),
            None,
        )
        if self.outcome is not None:
            self.outcome.taints.append(observe.parse_taint(sections["taint"]))
        return StepRecord(
            index=index,
            step=format_step(step),
            errno=errno_value,
            log=observe.normalize_pointers(
                observe.normalize_reloc_sections(
                    observe.drop_lines_of(
                        observe.filter_log(texts, self.module_names), self.undeclared
                    )
                )
            ),
            sysfs=sysfs,
            modules=observe.parse_modules(sections["modules"]),
            impls=observe.parse_impls(sections["impls"]),
            pending=pending,
            actors=observe.parse_actors(sections["actors"]),
            retries=waits.parse_retries(sections["retries"]),
            report=observe.report_in(texts)
            or observe.report_in([r.text for r in observe.parse_kmsg(sections["late"])]),
            ran=(
                trigger.parse_ran(sections["trigger"], step, self.watched, self.replaced)
                if isinstance(step, Trigger)
                else observed_check(step, *parse_report(sections["action"]))
                if isinstance(step, Check)
                else {}
            ),
        )
