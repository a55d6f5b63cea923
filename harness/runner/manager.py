"""The guest of one kernel profile, clean for every scenario.

The first guest of a profile is booted, prepared (debug settings, baseline) and
saved as a snapshot (harness.guest.snapshot); every later guest resumes from it in a
fraction of a second.  So each scenario gets a guest that no earlier scenario
touched: nothing it left behind (a forced patch, a corrupted heap) can reach the
next one.  Without a usable snapshot the manager falls back to booting and, between
scenarios, to cleaning the guest (verified) and booting again when that fails.  Both
the CLI (`run`, `repro`) and the pytest plugin go through it, so a scenario behaves
the same however it is started.
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
    from harness.guest.vm import Guest, GuestConfig


class GuestManager:
    """Owns the guest of one profile; `close()` (or the context manager) stops it."""

    def __init__(
        self, profile: KernelProfile, log_dir: Path | None = None, snapshots: bool = True
    ) -> None:
        self.profile = profile
        self.log_dir = log_dir
        self.snapshots = snapshots
        self._config: GuestConfig | None = None
        self._guest: Guest | None = None
        self._stack = contextlib.ExitStack()
        self._baseline: reset.GuestBaseline | None = None
        self._dirty = False
        self.boots = 0
        self.boot_seconds: list[float] = []
        self.restore_seconds: list[float] = []
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

    def config(self) -> GuestConfig:
        """The profile's guest config (its initramfs planned once per manager)."""
        from harness.guest.vm import GuestConfig

        if self._config is None:
            self._config = GuestConfig.for_profile(self.profile, log_dir=self.log_dir)
        return self._config

    def _start(self) -> Guest:
        """A new guest: resumed from the snapshot, or booted (and saved for next time)."""
        self.close()
        guest = self._restore() if self.snapshots else None
        if guest is None:
            guest = self._boot()
        self._guest = guest
        self._dirty = False
        return guest

    def _restore(self) -> Guest | None:
        """Resume the profile's snapshot, verified clean; None if there is none yet
        (then this manager boots and saves it) or it proved unusable (discarded)."""
        from harness.guest.snapshot import SnapshotStore
        from harness.guest.vm import Guest, RestoreFailed

        store = SnapshotStore(self.config(), reset.PREPARE)
        snapshot = store.load()
        if snapshot is None:
            return None
        started = time.monotonic()
        try:
            guest = self._stack.enter_context(Guest(self.config(), restore=snapshot.saved))
            baseline = reset.GuestBaseline.from_json(snapshot.extra)
            problems = reset.verify_clean(guest, baseline)
        except RestoreFailed:
            problems = ["QEMU refused the saved state"]
        except (HarnessError, ValueError) as exc:
            problems = [str(exc)]
        if problems:
            self.close()
            store.discard()
            return None
        self._baseline = baseline
        self.restore_seconds.append(time.monotonic() - started)
        return guest

    def _boot(self) -> Guest:
        """Boot and prepare a guest; with snapshots on, save it (under the store's
        lock: a parallel manager that got there first has saved it, so resume that)."""
        from harness.guest.snapshot import SnapshotStore

        if not self.snapshots:
            return self._boot_prepared()
        store = SnapshotStore(self.config(), reset.PREPARE)
        with store.creating() as staging:
            restored = self._restore()
            if restored is not None:
                return restored
            guest = self._boot_prepared()
            assert self._baseline is not None
            store.save(staging, guest.save, guest.key_file, self._baseline.to_json())
        return guest

    def _boot_prepared(self) -> Guest:
        from harness.guest.vm import Guest

        self.close()
        started = time.monotonic()
        guest = self._stack.enter_context(Guest(self.config()))
        self._baseline = reset.prepare(guest)
        self.boots += 1
        self.boot_seconds.append(time.monotonic() - started)
        return guest

    def clean_guest(self) -> Guest:
        """A guest with nothing of earlier scenarios left: resumed from the snapshot,
        or (without one) cleaned, or freshly booted."""
        guest = self._guest
        if guest is None or self._baseline is None:
            return self._start()
        if not self._dirty:
            return guest
        if self.snapshots:
            return self._start()
        started = time.monotonic()
        try:
            guest.check_alive()
            problems = reset.clean(guest, self._baseline)
        except HarnessError as exc:
            problems = [str(exc)]
        if problems:
            return self._start()
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
            self._check_kernel_health(guest, outcome)
        except HarnessError as exc:
            outcome = ScenarioOutcome(scenario.name, self.profile.name, predicted, error=str(exc))
            excerpt = getattr(exc, "excerpt", "")
            if excerpt:
                outcome.error = f"{exc}\n{excerpt}"
            self.close()
        if artifacts is not None:
            write_artifacts(artifacts, outcome, guest, console_start)
        return outcome

    def _check_kernel_health(self, guest: Guest, outcome: ScenarioOutcome) -> None:
        """A scenario whose steps all matched still fails if the kernel was hurt: a
        taint flag no scenario should raise (a WARN, an oops, a bad page)."""
        assert self._baseline is not None
        state = reset.read_state(guest)
        hurt = reset.unexpected_taint(self._baseline.taint, state.taint)
        if hurt and outcome.error is None:
            outcome.error = (
                f"the kernel raised taint {hurt} during the scenario "
                f"(now {reset.taint_letters(state.taint)}); see console.log"
            )
            self.close()

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
