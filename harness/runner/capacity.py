"""How many guests this machine runs at once to advantage: measured, then cached.

`klp-harness run -j` defaults to this number.  It is measured, not guessed from the
CPU count, because what a guest costs depends on the machine: under TCG each guest
keeps a host CPU busy while it computes, under KVM far less, and SMT siblings or a
loaded CI runner change the picture.  The probe resumes 1, 2, ... guests of a profile
at once (from its snapshot, which it makes if needed), has each run the same
CPU-bound shell loop, and records the throughput (loops per second, all guests
together); the answer is the smallest count within 10% of the best.  It runs once
per machine (`klp-harness setup`), keyed like the KVM probe, and is kept in
`<cache>/capacity.json`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.files import atomic_write
from harness.guest.accel import machine_key
from harness.kernel.profiles import KernelProfile, cache_root
from harness.runner.guests import GuestSource

if TYPE_CHECKING:
    from harness.guest.vm import Guest

PROBE_LOOP = "i=0; while [ $i -lt 15000 ]; do i=$((i+1)); done"
REPEAT = 2  # the best of two: a burst of other load on the machine lowers one
GOOD_ENOUGH = 0.9  # a count within 10% of the best throughput is as good


def cache_file() -> Path:
    return cache_root() / "capacity.json"


def cached_jobs() -> int | None:
    """The measured count for this machine, if it was measured."""
    try:
        data = json.loads(cache_file().read_text())
        jobs = data[machine_key()]["jobs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return jobs if isinstance(jobs, int) and jobs > 0 else None


def choose(throughput: dict[int, float]) -> int:
    """The smallest guest count whose throughput is within 10% of the best."""
    best = max(throughput.values())
    return min(k for k, value in throughput.items() if value >= GOOD_ENOUGH * best)


def measure(profile: KernelProfile, most: int | None = None) -> dict[int, float]:
    """Throughput (probe loops per second) with 1..`most` guests at once; stops
    early once adding a guest no longer helps."""

    most = most or len(os.sched_getaffinity(0)) + 1
    sources = [GuestSource(profile) for _ in range(most)]
    throughput: dict[int, float] = {}
    try:
        guests = [source.take({}).guest for source in sources]
        for guest in guests:
            guest.run(PROBE_LOOP, timeout=300)  # warm: translation caches filled
        for count in range(1, most + 1):
            fastest = min(_all_at_once(guests[:count]) for _ in range(REPEAT))
            throughput[count] = count / fastest
            if count > 1 and throughput[count] < throughput[count - 1]:
                break
    finally:
        for source in sources:
            source.close()
    return throughput


def _all_at_once(guests: list[Guest]) -> float:
    """Seconds until every guest has run the probe loop, started together."""
    barrier = threading.Barrier(len(guests) + 1)
    errors: list[BaseException] = []

    def one(guest: Guest) -> None:
        barrier.wait()
        try:
            guest.run(PROBE_LOOP, timeout=300)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(g,)) for g in guests]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.monotonic()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.monotonic() - started


def record(throughput: dict[int, float]) -> int:
    """Cache the choice for this machine; returns it."""
    jobs = choose(throughput)
    try:
        data = json.loads(cache_file().read_text())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data[machine_key()] = {
        "jobs": jobs,
        "throughput": {str(k): round(v, 3) for k, v in sorted(throughput.items())},
    }
    atomic_write(cache_file(), json.dumps(data, indent=1) + "\n")
    return jobs
