"""Telling a kernel that was stuck from a host that did not run it.

A soft lockup, an RCU stall or a hung task says the kernel counted N seconds in which
a CPU or a task made no progress.  Under TCG the guest's clock is the host's, so a
host that does not schedule QEMU for N seconds (a loaded CI runner, a stopped
process) makes the guest's clock jump by N seconds and its watchdogs fire, falsely:
"BUG: soft lockup - CPU#0 stuck for 24s!" after QEMU got 0.4 s of CPU in 26 s.  A
real lockup (a replacement spinning without yielding) keeps QEMU busy all along.

So QEMU's CPU time is sampled (its /proc/<pid>/stat, every POLL while the console is
drained), and a stall report is the host's when QEMU went without CPU for at least
half the time the kernel counted, within that time and a margin before the report
arrived (measured on debian-6.1: false reports had zero-CPU stretches of 20-25 s for
21-26 s counted; real ones none).  Guest options (the watchdog threshold), comparing
guest and host time (equal under TCG), QMP's run state ("running" however little CPU
QEMU gets) and the clocksource's "Long readout interval" line (printed only when an
interval beats the previous maximum) were measured too and tell less.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.guest.errors import HostFailure

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
KEPT = 300.0  # seconds of samples kept (hung tasks count 120 s)
MARGIN = 30.0  # before the counted time: the report may print a while after the stall
IDLE_RATE = 0.05  # CPU seconds per second below which QEMU counts as not run
MIN_STALL = 5.0  # shorter stretches without CPU are scheduling noise


class GuestStarved(HostFailure):
    """The kernel reported a stall that the host caused by not running QEMU: a host
    failure, never a kernel report; the scenario is worth running again once."""

    retry = True


def cpu_seconds(pid: int) -> float | None:
    """The CPU time (user + system, all threads) of process `pid`, or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return (int(fields[11]) + int(fields[12])) / TICK
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Stall:
    """The longest stretch in which QEMU did not run, and the CPU it got around it."""

    longest: float  # seconds without CPU
    cpu: float  # CPU seconds QEMU got in `window`
    window: float  # seconds looked at


class CpuHistory:
    """QEMU's CPU time sampled over the last KEPT seconds; `sample()` from one thread,
    `stall()` from any."""

    def __init__(
        self,
        pid: int,
        read: Callable[[int], float | None] = cpu_seconds,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pid = pid
        self.read = read
        self.clock = clock
        self._samples: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()

    def sample(self) -> None:
        cpu = self.read(self.pid)
        if cpu is None:
            return
        now = self.clock()
        with self._lock:
            self._samples.append((now, cpu))
            while self._samples and self._samples[0][0] < now - KEPT:
                self._samples.popleft()

    def stall(self, seconds: float) -> Stall:
        """QEMU's longest stretch without CPU in the last `seconds` + MARGIN."""
        self.sample()
        now = self.clock()
        start = now - seconds - MARGIN
        with self._lock:
            samples = [s for s in self._samples if s[0] >= start]
        longest = current = 0.0
        for (t0, c0), (t1, c1) in itertools.pairwise(samples):
            span = t1 - t0
            if span > 0 and (c1 - c0) / span < IDLE_RATE:
                current += span
                longest = max(longest, current)
            else:
                current = 0.0
        cpu = samples[-1][1] - samples[0][1] if len(samples) > 1 else 0.0
        window = samples[-1][0] - samples[0][0] if len(samples) > 1 else 0.0
        return Stall(longest, cpu, window)


def host_starved(history: CpuHistory, counted: float) -> str | None:
    """Why a stall report of `counted` seconds is the host's, or None if QEMU ran."""
    stall = history.stall(counted)
    if stall.longest < max(MIN_STALL, counted / 2):
        return None
    return (
        f"host stall: QEMU ran {stall.cpu:.1f} s of CPU in {stall.window:.0f} s and none for "
        f"{stall.longest:.0f} s, of the {counted:.0f} s the kernel counted as stuck"
    )
