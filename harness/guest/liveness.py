"""Telling a frozen or vanished QEMU from a guest that is busy.

A guest that does not answer may be working (a transition that takes its time), hung
(the kernel's problem, for the step's own timeout to show), or not running at all: its
QEMU stopped by a signal (SIGSTOP, a debugger), paused, or deadlocked.  The last is
the host's failure and must be named as such within seconds, not after a step's
timeout of minutes.  So whoever waits on the guest calls `Liveness.check()` as it
polls; at most every CHECK_EVERY it reads QEMU's process state (`T`: stopped), and
every QUIET_FOR it asks QEMU's run state over QMP:
anything but "running" (paused, stopped for an I/O error) is named, and so is a QEMU
that does not answer QMP twice in a row.  Waiting callers poll often, so these looks
cost nothing while commands answer in time.  A guest whose kernel panicked is the crash
watcher's (harness.guest.crash) and QEMU's exit the console's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from harness.guest.errors import GuestCrashed, GuestError, HostFailure
from harness.guest.qmp import QmpClient

CHECK_EVERY = 1.0  # seconds between looks at QEMU's process state
STOPPED_FOR = 3.0  # a process stopped this long is frozen (not a debugger's single step)
QUIET_FOR = 8.0  # no output this long: ask QEMU's run state
QMP_TIMEOUT = 5.0  # for QEMU to answer query-status
QMP_MISSES = 2  # unanswered queries in a row that make a QEMU frozen
KERNEL_STATES = {"internal-error", "guest-panicked"}  # the guest's doing, not the host's


class GuestFrozen(HostFailure):
    """QEMU is not running the guest: stopped by a signal, paused, or not answering."""


def process_state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat (R, S, D, T stopped, t traced, Z), or ""."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[0] if fields else ""


class Liveness:
    """Watches one QEMU (`pid`, its QMP socket) for a caller that is waiting on it.
    `activity()` says what the guest was doing, for the message."""

    def __init__(
        self,
        pid: int,
        qmp_socket: Path,
        activity: Callable[[], str] = lambda: "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pid = pid
        self.qmp_socket = qmp_socket
        self.activity = activity
        self.clock = clock
        self._next = clock() + CHECK_EVERY
        self._answered = clock()  # QEMU last answered QMP (or the watch began)
        self._stopped_since: float | None = None
        self._next_query = clock() + QUIET_FOR
        self._misses = 0

    def check(self) -> None:
        """Raise GuestFrozen (or GuestCrashed for a run state the guest caused) if
        QEMU is not running the guest; cheap when called often."""
        now = self.clock()
        if now < self._next:
            return
        self._next = now + CHECK_EVERY
        state = process_state(self.pid)
        if state in ("T", "t"):
            self._stopped_since = self._stopped_since or now
            if now - self._stopped_since >= STOPPED_FOR:
                why = "stopped by a signal (SIGSTOP?)" if state == "T" else "stopped by a tracer"
                self._frozen(f"QEMU (pid {self.pid}) is {why}", now - self._stopped_since)
            return
        self._stopped_since = None
        if now >= self._next_query:
            self._query(now)
            self._next_query = self.clock() + QUIET_FOR

    def _query(self, now: float) -> None:
        try:
            deadline = time.monotonic() + QMP_TIMEOUT
            with QmpClient(self.qmp_socket, deadline, command_timeout=QMP_TIMEOUT) as qmp:
                status = qmp.status()
        except GuestError:
            self._misses += 1
            if self._misses >= QMP_MISSES:
                self._frozen(f"QEMU (pid {self.pid}) does not answer on QMP", now - self._answered)
            return
        self._misses = 0
        self._answered = now
        if status in KERNEL_STATES:
            raise GuestCrashed(f"QEMU stopped the guest: run state {status}{self._doing()}")
        if status not in ("running", "inmigrate", "postmigrate", "finish-migrate"):
            self._frozen(f"QEMU's run state is {status!r}", 0.0)

    def _frozen(self, what: str, seconds: float) -> None:
        lasted = f" for {seconds:.0f} s" if seconds >= 1 else ""
        raise GuestFrozen(f"the guest is frozen: {what}{lasted}{self._doing()}")

    def _doing(self) -> str:
        doing = self.activity()
        return f", during {doing}" if doing else ""
