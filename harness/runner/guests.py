"""Where a scenario's guest comes from: resumed from the profile's snapshot, with the
scenario's modules already installed, made while the previous scenario runs.

A scenario's own time is spent waiting on the kernel; what comes between scenarios
(resuming a guest, copying modules in, depmod) is pure overhead.  So `GuestSource`
prepares the next scenario's guest in the background (`prefetch`) and hands it over
ready (`take`).  The first guest of a profile is booted, prepared and saved as the
snapshot (harness.guest.snapshot); when no snapshot can be used the source boots.
Guests with another CPU count (a scenario's `cpus`) have their own snapshot: its key
hashes the QEMU command line, `-smp` included, and a guest made ahead is used only
by a scenario that wants its modules and its CPU count.

Every guest is started from one long-lived launcher thread: QEMU gets a parent-death
signal (harness.host.reaper), which the kernel sends when the *thread* that
started it ends, so that thread must outlive every guest it starts.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.guest.errors import GuestCrashed, GuestTimeout, HostFailure, QemuKilled, RestoreFailed
from harness.guest.snapshot import SnapshotStore
from harness.guest.vm import Guest, GuestConfig
from harness.host import reaper
from harness.kernel.profiles import KernelProfile
from harness.runner import reset
from harness.runner.options import GuestOptions
from harness.runner.session import install_modules

if TYPE_CHECKING:
    from harness.guest.snapshot import SnapshotStore
    from harness.guest.vm import Guest, GuestConfig


@dataclass
class ReadyGuest:
    """A clean guest with a scenario's modules installed and its kernel log cleared."""

    guest: Guest
    modules: dict[str, Path]
    cpus: int = 1


@dataclass
class SourceStats:
    boot_seconds: list[float] = field(default_factory=list)
    restore_seconds: list[float] = field(default_factory=list)  # start -> verified clean
    install_seconds: list[float] = field(default_factory=list)
    wait_seconds: list[float] = field(default_factory=list)  # `take` blocked this long
    notes: list[str] = field(default_factory=list)  # faults repaired on the way (one line)


class GuestSource:
    """Ready guests of one profile; `close()` stops every guest it started."""

    def __init__(
        self,
        profile: KernelProfile,
        log_dir: Path | None = None,
        fast: bool = False,
        snapshot_root: Path | None = None,  # default: <cache>/snapshots
        options: GuestOptions | None = None,  # --append, --memory, --cpus
        notify: Callable[[str], None] | None = None,  # a boot's progress, for people
    ) -> None:
        reaper.install()  # from the caller's (main) thread: SIGTERM handling
        self.profile = profile
        self.notify = notify
        self.fast = fast  # guests without the kernel's memory checks
        self.options = options or GuestOptions()
        self.snapshot_root = snapshot_root
        self.log_dir = log_dir / "guests" if log_dir is not None else None  # console logs
        self.stats = SourceStats()
        self.baseline: reset.GuestBaseline | None = None
        self._configs: dict[int, GuestConfig] = {}  # by CPU count
        self._launcher = ThreadPoolExecutor(1, thread_name_prefix=f"klp-{profile.name}")
        self._next: Future[ReadyGuest] | None = None
        self._guests: list[Guest] = []  # every guest made, closed by close()
        self._lock = threading.Lock()
        self._closed = False

    def config(self, cpus: int = 1) -> GuestConfig:
        """The profile's guest config with `cpus` CPUs, planned once; again if its
        initramfs went away (a checkout with other image inputs sharing the cache
        replaced it)."""

        config = self._configs.get(cpus)
        if config is None or not config.initrd.exists():
            config = self.options.apply(
                GuestConfig.for_profile(
                    self.profile, log_dir=self.log_dir, memory_checks=not self.fast, cpus=cpus
                )
            )
            self._configs[cpus] = config
        return config

    # ---- the caller's side ----------------------------------------------------------

    def prefetch(self, modules: dict[str, Path], cpus: int = 1) -> None:
        """Start making the guest of the scenario that comes next."""
        if self._next is None and not self._closed:
            self._next = self._launcher.submit(self._make, modules, cpus)

    def take(self, modules: dict[str, Path], cpus: int = 1) -> ReadyGuest:
        """A ready guest with `cpus` CPUs for a scenario with these modules: the
        prefetched one if it was made for them, else a new one."""
        started = time.monotonic()
        pending, self._next = self._next, None
        ready: ReadyGuest | None = None
        if pending is not None:
            try:
                ready = pending.result()
            except HarnessError as exc:
                self.stats.notes.append(f"a guest made ahead was lost ({exc}); made again")
                ready = None  # made again below; a second failure is the scenario's
            if ready is not None and (ready.modules != modules or ready.cpus != cpus):
                ready.guest.close()
                ready = None
        if ready is None:
            ready = self._launcher.submit(self._make, modules, cpus).result()
        self.stats.wait_seconds.append(time.monotonic() - started)
        return ready

    def close(self) -> None:
        """Stop every guest it made (handed out, prefetched, or being started: that
        start fails at once)."""
        self._closed = True
        with self._lock:
            guests, self._guests = self._guests, []
        for guest in guests:
            guest.close()  # idempotent
        pending, self._next = self._next, None
        if pending is not None and not pending.cancel():
            try:
                ready: ReadyGuest | None = pending.result()
            except BaseException:  # whatever it was, that guest is gone
                ready = None
            if ready is not None:
                ready.guest.close()
        self._launcher.shutdown(wait=True, cancel_futures=True)

    # ---- the launcher thread ---------------------------------------------------------

    def _make(self, modules: dict[str, Path], cpus: int = 1) -> ReadyGuest:
        guest = self._resume(cpus) or self._boot_and_save(cpus)
        try:
            started = time.monotonic()
            install_modules(guest, modules)
            self.stats.install_seconds.append(time.monotonic() - started)
        except BaseException:
            guest.close()
            raise
        return ReadyGuest(guest, modules, cpus)

    def _store(self, cpus: int) -> SnapshotStore:

        return SnapshotStore(self.config(cpus), reset.PREPARE, self.snapshot_root)

    def _resume(self, cpus: int = 1) -> Guest | None:
        """The snapshot resumed and verified clean; None if there is none, or it
        proved damaged (then it is discarded and the caller boots).

        Only the snapshot's own failures discard it: QEMU refusing the saved state, a
        resumed kernel that crashes or is not clean, a record that does not parse.
        The host's (a full disk, no descriptors, a socket QEMU could not bind, QEMU
        missing, a guest that did not answer in time) and a QEMU killed from outside
        keep it for everyone else who shares the cache, and are raised as they are."""

        store = self._store(cpus)
        snapshot = store.load()
        if snapshot is None:
            if store.damage is not None:
                self._note_discarded(store, store.damage)
            return None
        started = time.monotonic()
        guest = Guest(self.config(cpus), restore=snapshot.saved)
        try:
            self._started(guest)
            baseline = reset.GuestBaseline.from_json(snapshot.extra)
            problems = reset.verify_clean(guest, baseline)
        except (QemuKilled, HostFailure, GuestTimeout):  # not the snapshot's fault
            guest.close()
            raise
        except RestoreFailed:
            problems = ["QEMU refused the saved state"]
        except GuestCrashed as exc:  # the resumed kernel crashed, or QEMU failed on it
            if self._closed:
                guest.close()
                raise
            problems = [str(exc)]
        except ValueError as exc:  # the baseline recorded with it
            problems = [str(exc)]
        except HarnessError:
            guest.close()
            raise
        if problems:
            guest.close()
            store.discard()
            self._note_discarded(store, problems[0])
            return None
        self.baseline = baseline
        self.stats.restore_seconds.append(time.monotonic() - started)
        return guest

    def _note_discarded(self, store: SnapshotStore, why: str) -> None:
        self.stats.notes.append(f"snapshot {store.directory.name} discarded ({why}); "
                                "a guest is booted to replace it")  # fmt: skip

    def _boot_and_save(self, cpus: int = 1) -> Guest:
        """Boot and prepare a guest and save it as the snapshot, under the store's
        lock (whoever got there first saved it: resume that instead)."""
        store = self._store(cpus)
        with contextlib.ExitStack() as stack:
            try:
                staging = stack.enter_context(store.creating())
            except OSError as exc:  # no room or no write access in the cache: boot only
                why = exc.strerror or str(exc)
                self.stats.notes.append(f"snapshot {store.directory.name} not saved ({why}); "
                                        "the next guest boots too")  # fmt: skip
                return self.boot(cpus)
            resumed = self._resume(cpus)
            if resumed is not None:
                return resumed
            guest = self.boot(cpus)
            assert self.baseline is not None
            # No snapshot this time (e.g. a full disk): guests are booted until one is
            # saved, and the run says why.
            try:
                store.save(staging, guest.save, guest.key_file, self.baseline.to_json())
            except (HarnessError, OSError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                self.stats.notes.append(f"snapshot {store.directory.name} not saved ({why}); "
                                        "the next guest boots too")  # fmt: skip
        return guest

    def boot_guest(self, cpus: int = 1) -> Guest:
        """A freshly booted, prepared guest, for callers that do not use snapshots
        (started on the launcher thread like every other)."""
        return self._launcher.submit(self.boot, cpus).result()

    def boot(self, cpus: int = 1) -> Guest:
        """A freshly booted, prepared guest (launcher thread).  A boot is the one wait
        of a run that lasts (15-25 s under TCG, where a resume takes 0.3 s): it is
        said before it starts and when it is done, so a quiet terminal is not taken
        for a hang."""

        started = time.monotonic()
        self._say(f"booting a guest ({cpus} CPU{'s' if cpus > 1 else ''})")
        guest = self._started(Guest(self.config(cpus)))
        try:
            self.baseline = reset.prepare(guest)
        except BaseException:
            guest.close()
            raise
        seconds = time.monotonic() - started
        self.stats.boot_seconds.append(seconds)
        self._say(f"guest booted and prepared in {seconds:.1f}s")
        return guest

    def _say(self, text: str) -> None:
        if self.notify is not None:
            self.notify(f"[{self.profile.name}] {text}")

    def _started(self, guest: Guest) -> Guest:
        """Enter (start) `guest`; `close()` stops it, even while it starts."""
        with self._lock:
            if self._closed:
                raise HarnessError("interrupted")
            self._guests = [g for g in self._guests if g.temp_dir is not None]  # closed ones
            self._guests.append(guest)
        guest.__enter__()
        return guest
