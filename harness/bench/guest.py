"""Benchmark: guest boot and command round trips, per kernel profile.

Boot-to-shell is QEMU start until a command answers on the serial console;
boot-to-ready until the command channel answers.  Round trips are for `true`,
which still forks a subshell in the guest (commands are isolated from each other).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from harness.guest.result import CommandResult
from harness.guest.vm import Guest, GuestConfig
from harness.kernel.profiles import load_profile, profile_names

BOOTS = 3
ROUND_TRIPS = 50


def _round_trip_ms(run: Callable[[str], CommandResult]) -> tuple[float, float]:
    """(median, 90th percentile) milliseconds of `true`."""
    samples = []
    for _ in range(ROUND_TRIPS):
        started = time.perf_counter()
        run("true")
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9)]


def _one_profile(name: str) -> None:

    config = GuestConfig.for_profile(load_profile(name))
    shell, ready = [], []
    with Guest(config) as guest:  # the first boot also measures round trips
        accel = guest.accel
        over_channel = _round_trip_ms(lambda cmd: guest.run(cmd))
        over_serial = _round_trip_ms(lambda cmd: guest.run_serial(cmd))
        shell.append(guest.shell_seconds)
        ready.append(guest.boot_seconds)
    for _ in range(BOOTS - 1):
        with Guest(config) as guest:
            shell.append(guest.shell_seconds)
            ready.append(guest.boot_seconds)
    print(
        f"   {name} ({accel}, {BOOTS} boots): boot-to-shell median "
        f"{statistics.median(shell):.1f} s (min {min(shell):.1f}, max {max(shell):.1f}), "
        f"boot-to-ready median {statistics.median(ready):.1f} s "
        f"(min {min(ready):.1f}, max {max(ready):.1f})"
    )
    print(
        f"   {name}: `true` round trip on the command channel {over_channel[0]:.1f} ms "
        f"(p90 {over_channel[1]:.1f}), "
        f"over serial {over_serial[0]:.1f} ms (p90 {over_serial[1]:.1f})",
        flush=True,
    )


def bench_guest() -> None:
    """Boot-to-shell, boot-to-ready and `true` round trips for every profile."""
    for name in profile_names():
        _one_profile(name)
