"""One guest per kernel profile, shared by many scenarios.

The manager boots lazily, cleans the guest between scenarios (verified), and replaces
it with a fresh boot when it is dirty, crashed or unreachable.  Both the CLI (`run`,
`repro`) and the pytest plugin go through it, so a scenario behaves the same however
it is started.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.kernels import KernelProfile
from harness.record import StepRecord
from harness.runner import reset
from harness.runner.session import Progress, ScenarioOutcome, ScenarioSession, install_modules
from harness.scenario.types import Scenario

if TYPE_CHECKING:
    from harness.guest.vm import Guest


class GuestManager:
    """Owns the guest of one profile; `close()` (or the context manager) stops it."""

    def __init__(self, profile: KernelProfile, log_dir: Path | None = None) -> None:
        self.profile = profile
        self.log_dir = log_dir
        self._guest: Guest | None = None
        self._stack = contextlib.ExitStack()
        self._baseline: reset.GuestBaseline | None = None
        self._dirty = False
        self.boots = 0
        self.boot_seconds: list[float] = []
        self.reset_seconds: list[float] = []

    def __enter__(self) -> GuestManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._guest = None
        self._baseline = None
        self._stack.close()
        self._stack = contextlib.ExitStack()

    def _boot(self) -> Guest:
        from harness.guest.vm import Guest, GuestConfig

        self.close()
        started = time.monotonic()
        config = GuestConfig.for_profile(self.profile, log_dir=self.log_dir)
        guest = self._stack.enter_context(Guest(config))
        self._baseline = reset.prepare(guest)
        self.boots += 1
        self.boot_seconds.append(time.monotonic() - started)
        self._guest = guest
        self._dirty = False
        return guest

    def clean_guest(self) -> Guest:
        """A guest with nothing of earlier scenarios left: cleaned, or freshly booted."""
        guest = self._guest
        if guest is None or self._baseline is None:
            return self._boot()
        if not self._dirty:
            return guest
        started = time.monotonic()
        try:
            guest.check_alive()
            problems = reset.clean(guest, self._baseline)
        except HarnessError as exc:
            problems = [str(exc)]
        if problems:
            return self._boot()
        self.reset_seconds.append(time.monotonic() - started)
        self._dirty = False
        return guest

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
    ) -> ScenarioOutcome:
        """Run one scenario; a crash or harness failure becomes the outcome's error and
        the guest is discarded, so the next scenario gets a fresh one."""
        guest = self.clean_guest()
        self._dirty = True
        console_start = _size(guest.console_log)
        try:
            install_modules(guest, modules)
            outcome = ScenarioSession(guest, scenario, self.profile.name).run(predicted, progress)
        except HarnessError as exc:
            outcome = ScenarioOutcome(scenario.name, self.profile.name, predicted, error=str(exc))
            excerpt = getattr(exc, "excerpt", "")
            if excerpt:
                outcome.error = f"{exc}\n{excerpt}"
            self.close()
        if artifacts is not None:
            write_artifacts(artifacts, outcome, guest, console_start)
        return outcome

    @property
    def guest(self) -> Guest:
        """The current guest (booting one if needed), e.g. for `repro` and Python tests."""
        return self._guest if self._guest is not None else self.clean_guest()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def write_artifacts(
    directory: Path, outcome: ScenarioOutcome, guest: Guest, console_start: int
) -> None:
    """Everything needed to understand a run without rerunning it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "predicted.json").write_text(
        json.dumps([r.to_json() for r in outcome.predicted], indent=1) + "\n"
    )
    (directory / "observed.json").write_text(
        json.dumps([r.to_json() for r in outcome.observed], indent=1) + "\n"
    )
    (directory / "kernel.log").write_text("\n".join(outcome.kernel_log) + "\n")
    (directory / "qemu-cmdline.txt").write_text(" ".join(guest.qemu_cmdline) + "\n")
    with contextlib.suppress(OSError), guest.console_log.open("rb") as console:
        console.seek(console_start)
        (directory / "console.log").write_bytes(console.read())
    from harness.report.text import failure_text

    if not outcome.passed:
        (directory / "report.txt").write_text(failure_text(outcome) + "\n")


def copy_sources(rendered: Path, directory: Path) -> None:
    """Keep the rendered module sources next to the results (for bug reports)."""
    target = directory / "modules"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(rendered, target)
