"""The guest of one kernel profile, clean for every scenario.

With snapshots (the default) every scenario gets a guest that no earlier scenario
touched, resumed from the profile's snapshot with its modules already installed
(harness.runner.guests prepares it while the previous scenario runs): nothing a
scenario leaves behind (a forced patch, a corrupted heap) can reach the next one.
Without snapshots one booted guest is cleaned between scenarios (verified) and
booted again when it is not provably clean.  Both the CLI (`run`, `repro`) and the
pytest plugin go through the manager, so a scenario behaves the same however it is
started.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.files import atomic_write, exclusive
from harness.guest.errors import GuestCrashed, GuestTimeout, QemuKilled
from harness.kernel.profiles import KernelProfile
from harness.outcome.record import StepRecord
from harness.outcome.scenario import ScenarioOutcome
from harness.report import html
from harness.report.text import failure_text
from harness.runner import reset
from harness.runner.guests import GuestSource
from harness.runner.options import GuestOptions
from harness.runner.session import Progress, ScenarioSession, install_modules
from harness.scenario.types import Scenario

if TYPE_CHECKING:
    from harness.guest.vm import Guest

SCENARIO_COPY = "scenario.toml"  # the scenario file as it was read
OUTCOME = "outcome.json"


class GuestManager:
    """Owns the guests of one profile; `close()` (or the context manager) stops them."""

    def __init__(
        self,
        profile: KernelProfile,
        log_dir: Path | None = None,
        snapshots: bool = True,
        fast_guest: bool = False,
        options: GuestOptions | None = None,
        run_options: Sequence[str] = (),
        notify: Callable[[str], None] | None = None,  # a boot's progress (GuestSource)
    ) -> None:
        self.profile = profile
        self.snapshots = snapshots
        self.run_options = list(run_options)  # the run's options a rerun needs
        self.source = GuestSource(profile, log_dir, fast=fast_guest, options=options, notify=notify)
        self._guest: Guest | None = None
        self._cpus = 1  # the current guest's CPU count
        self._installed = False  # the guest's modules are installed, its log cleared
        self._dirty = False
        self.reset_seconds: list[float] = []

    def __enter__(self) -> GuestManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every guest (the current one and one being prepared)."""
        self.discard()
        self.source.close()

    def discard(self) -> None:
        """Stop the current guest; the next user gets a new one."""
        guest, self._guest = self._guest, None
        if guest is not None:
            guest.close()

    @property
    def boot_seconds(self) -> list[float]:
        return self.source.stats.boot_seconds

    @property
    def restore_seconds(self) -> list[float]:
        return self.source.stats.restore_seconds

    def _new_guest(self, modules: dict[str, Path], cpus: int) -> Guest:
        self.discard()
        if self.snapshots:
            ready = self.source.take(modules, cpus)
            self._guest, self._installed = ready.guest, True
        else:
            self._guest = self.source.boot_guest(cpus)
            self._installed = False
        self._cpus = cpus
        self._dirty = False
        return self._guest

    def clean_guest(self, modules: dict[str, Path] | None = None, cpus: int = 1) -> Guest:
        """A guest with `cpus` CPUs and nothing of earlier scenarios left (and
        `modules` installed, when given): new from the snapshot, or cleaned, or
        freshly booted."""
        guest = self._guest
        if (
            guest is None
            or (self._dirty and self.snapshots)
            or cpus != self._cpus
            or (self._dirty and not self._cleaned(guest))
        ):
            guest = self._new_guest(modules or {}, cpus)
        if modules is not None and not self._installed:
            install_modules(guest, modules)
            self._installed = True
        return guest

    def _cleaned(self, guest: Guest) -> bool:
        """Clean a used guest for the next scenario; False if it could not be."""
        started = time.monotonic()
        try:
            guest.check_alive()
            assert self.source.baseline is not None
            problems = reset.clean(guest, self.source.baseline)
        except HarnessError as exc:
            problems = [str(exc)]
        if problems:
            return False
        self.reset_seconds.append(time.monotonic() - started)
        self._dirty = False
        return True

    def mark_dirty(self) -> None:
        """The guest was used outside `run_scenario` (e.g. by a Python test): clean it
        before the next user."""
        self._dirty = True

    def run_scenario(
        self,
        scenario: Scenario,
        predicted: list[StepRecord],
        modules: dict[str, Path],
        artifacts: Path | None = None,
        progress: Progress | None = None,
        then: dict[str, Path] | None = None,
        keep: bool = False,
        then_cpus: int = 1,
        retried: bool = False,
    ) -> ScenarioOutcome:
        """Run one scenario in a guest with its `cpus`; a crash or harness failure
        becomes the outcome's error and the guest is discarded, so the next scenario
        gets a fresh one.  `then`, `then_cpus`: the modules and CPU count of the
        scenario that comes next, whose guest is prepared meanwhile; `keep`: leave
        the guest running as the scenario left it (`manager.guest`).  A scenario whose
        guest the host starved (harness.guest.stall) runs once more on a new guest."""
        try:
            guest = self._guest_for(modules, scenario.cpus)
        except HarnessError as exc:  # no guest: the host's failure, not the kernel's
            outcome = _failed(scenario, self.profile.name, predicted, exc)
            outcome.host_failure = True
            return outcome
        if then is not None and self.snapshots:
            self.source.prefetch(then, then_cpus)
        console_start = _size(guest.console_log)
        session: ScenarioSession | None = None
        try:
            session = ScenarioSession(guest, scenario, self.profile.name, self._installed)
            outcome = session.run(predicted, progress)
            if outcome.observed and outcome.observed[-1].report:
                self.discard()  # a predicted report (a known kernel bug): hurt, by design
            else:
                self._check_kernel_health(guest, outcome)
        except HarnessError as exc:
            partial = session.outcome if session is not None else None
            outcome = _failed(scenario, self.profile.name, predicted, exc, partial)
            self.discard()
            if getattr(exc, "retry", False) and not retried:
                self._dirty, self._installed = True, False
                return self.run_scenario(scenario, predicted, modules, artifacts, progress,
                                         then, keep, then_cpus, retried=True)  # fmt: skip
        self._dirty = True
        self._installed = False
        outcome.run_options = list(self.run_options)
        if artifacts is not None:
            try:
                write_artifacts(artifacts, outcome, guest, console_start, scenario, self.profile)
            except OSError as exc:  # a full or read-only results directory
                artifacts_lost(outcome, artifacts, exc)
        if self.snapshots and not keep:
            self.discard()  # done with it: the next scenario gets its own
        return outcome

    def _guest_for(self, modules: dict[str, Path], cpus: int) -> Guest:
        if self._guest is not None and not self._dirty and self._installed:
            self.discard()  # prepared for someone else's modules
        return self.clean_guest(modules, cpus)

    def _check_kernel_health(self, guest: Guest, outcome: ScenarioOutcome) -> None:
        """A scenario whose steps all matched still fails if the kernel was hurt: a
        taint flag no scenario should raise (a WARN, an oops, a bad page).  Every
        step observes the taint, so the report names the step that raised it; when
        there is no reading (no steps), it is read now."""
        baseline = self.source.baseline
        assert baseline is not None
        taints = list(outcome.taints)
        if not taints or taints[-1] < 0:
            taints.append(reset.read_state(guest).taint)
        for index, taint in enumerate(taints):
            hurt = reset.unexpected_taint(baseline.taint, taint) if taint >= 0 else ""
            if not hurt:
                continue
            where = (
                f" at step {index + 1} ({outcome.observed[index].step})"
                if index < len(outcome.observed)
                else ""
            )
            if outcome.error is None:
                outcome.error = (
                    f"the kernel raised taint {hurt}{where} "
                    f"(now {reset.taint_letters(taints[-1])}); see console.log"
                )
            self.discard()
            return

    @property
    def guest(self) -> Guest:
        """The current guest (a new one if needed), e.g. for `repro` and Python tests."""
        return self._guest if self._guest is not None else self.clean_guest()


def _failed(
    scenario: Scenario,
    profile: str,
    predicted: list[StepRecord],
    exc: HarnessError,
    partial: ScenarioOutcome | None = None,
) -> ScenarioOutcome:
    """The outcome of a scenario that `exc` ended: `partial` (the steps observed
    before it, their kernel log) if there is one, with the error and its excerpt."""
    outcome = partial or ScenarioOutcome(scenario.name, profile, predicted)
    outcome.error = str(exc)
    outcome.host_failure = host_failed(exc)
    excerpt = getattr(exc, "excerpt", "")
    if excerpt:
        outcome.error = f"{exc}\n{excerpt}"
    return outcome


def host_failed(exc: HarnessError) -> bool:
    """Whether `exc` ended a scenario through the host's or the harness's fault (the
    run says nothing of the kernel: exit 3) rather than the kernel's: a crash or a
    report of the kernel and a guest that stopped answering are the kernel's (a
    difference), QEMU killed from outside, a host failure (harness.guest.errors) and
    anything else that broke the harness's hold on the guest are not."""
    if getattr(exc, "host_failure", False) or isinstance(exc, QemuKilled):
        return True
    return not isinstance(exc, GuestCrashed | GuestTimeout)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def write_artifacts(
    directory: Path,
    outcome: ScenarioOutcome,
    guest: Guest | None,
    console_start: int,
    scenario: Scenario,
    profile: KernelProfile,
) -> None:
    """Everything needed to understand a run without rerunning it, and to rerun it:
    the records, the logs, the QEMU command line, the scenario file and, written last
    (so a folder that has it is complete), outcome.json; then the run's HTML report
    gains the scenario (harness.report.html)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "predicted.json").write_text(
        json.dumps([r.to_json() for r in outcome.predicted], indent=1) + "\n"
    )
    (directory / "observed.json").write_text(
        json.dumps([r.to_json() for r in outcome.observed], indent=1) + "\n"
    )
    (directory / "kernel.log").write_text("\n".join(outcome.kernel_log) + "\n")
    if guest is not None:
        (directory / "qemu-cmdline.txt").write_text(" ".join(guest.qemu_cmdline) + "\n")
        with contextlib.suppress(OSError), guest.console_log.open("rb") as console:
            console.seek(console_start)
            (directory / "console.log").write_bytes(console.read())
    if scenario.text:
        (directory / SCENARIO_COPY).write_text(scenario.text)
    if outcome.status in ("difference", "host-failure"):
        (directory / "report.txt").write_text(failure_text(outcome) + "\n")
    atomic_write(
        directory / OUTCOME, json.dumps(outcome_json(outcome, scenario, profile), indent=1)
    )
    render_as_run_goes(directory)


def outcome_json(
    outcome: ScenarioOutcome, scenario: Scenario, profile: KernelProfile
) -> dict[str, object]:
    """The scenario's verdict and identity (docs/ci.md, "Artifacts"): status and its
    reason, the first difference as a 1-based step number, the times of each step,
    the kernel, and the command that runs it again."""
    reason = outcome.skipped or outcome.refused
    return {
        "scenario": outcome.scenario,
        "profile": outcome.profile,
        "status": outcome.status,
        "reason": reason,
        "error": outcome.error,
        "seconds": round(outcome.seconds, 3),
        "first_difference": outcome.mismatch.index + 1 if outcome.mismatch else None,
        "command": shlex.join(
            [
                "klp-harness",
                "run",
                *kernel_options(profile),
                *outcome.run_options,
                str(scenario.path.resolve()),
            ]
        ),
        "scenario_file": str(scenario.path),
        "kernel": {
            "profile": profile.name,
            "release": profile.release,
            "vermagic": profile.vermagic,
        },
        "steps": [
            {
                "number": record.index + 1,
                "step": record.step,
                "host_start": record.started,
                "host_end": record.ended,
                "guest_start": record.guest_started,
                "guest_end": record.guest_ended,
            }
            for record in outcome.observed
            if record.started is not None and record.ended is not None
        ],
    }


def kernel_options(profile: KernelProfile) -> list[str]:
    """The options that select `profile` on the command line."""
    if profile.name.startswith("dir:"):
        return ["--kernel-dir", profile.name.removeprefix("dir:")]
    return ["--kernel", profile.name]


def render_as_run_goes(directory: Path) -> None:
    """Add a finished scenario's page to its run's HTML report and redraw the matrix
    (`<results>/<profile>/<scenario>`: the run is two levels up), one writer at a time
    (guests of several profiles finish at once).  A report that cannot be drawn costs
    the run nothing: `klp-harness report` draws it again from the artifacts."""
    results = directory.parents[1]
    with contextlib.suppress(HarnessError, OSError), exclusive(results / ".report.lock"):
        html.render_scenario(results, directory.parent.name, directory.name)
        html.render_index(results)


def artifacts_lost(outcome: ScenarioOutcome, directory: Path, exc: OSError) -> None:
    """Make a scenario whose artifacts could not be written an error (its steps and
    verdict stay): results that are not kept must not look like a clean pass."""
    note = f"artifacts not kept in {directory}: {exc.strerror or exc}"
    outcome.host_failure = True
    if outcome.error is None:
        outcome.error = note
    elif f"artifacts not kept in {directory}:" not in outcome.error:
        outcome.error += f"\n{note}"


def copy_sources(rendered: Path, directory: Path) -> None:
    """Keep the rendered module sources next to the results (for bug reports).  File
    by file: copytree gathers failures into one shutil.Error whose text is a list of
    every file, where the first OSError says what went wrong in one line."""
    target = directory / "modules"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for source in sorted(rendered.rglob("*")):
        copy = target / source.relative_to(rendered)
        if source.is_dir():
            copy.mkdir()
        else:
            shutil.copyfile(source, copy)
