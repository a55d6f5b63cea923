"""Benchmark: what the guests' memory checks cost (slub_debug=FZPU, init_on_free=1,
KFENCE; harness.guest.config.MEMORY_CHECKS), on boot and on the 22 upstream
scenarios, checked and unchecked guests alternating in one run."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from harness.guest.vm import Guest, GuestConfig
from harness.kernel.profiles import DEFAULT_PROFILE, load_profile
from harness.runner.prepare import prepare
from harness.runner.suite import run_prepared
from harness.scenario.loader import load_scenarios

UPSTREAM = Path(__file__).resolve().parents[2] / "tests" / "scenarios" / "upstream"
RESULTS = Path("/tmp/klp-harness-bench-checks")
ROUNDS = 2


def _boot_seconds(fast: bool) -> float:

    config = GuestConfig.for_profile(load_profile(DEFAULT_PROFILE), memory_checks=not fast)
    with Guest(config) as guest:
        return guest.boot_seconds


def bench_checks() -> None:
    profile = load_profile(DEFAULT_PROFILE)
    prepared = prepare(load_scenarios([UPSTREAM]), profile, echo=lambda _text: None)
    walls: dict[bool, list[float]] = {False: [], True: []}
    boots: dict[bool, list[float]] = {False: [], True: []}
    for fast in (False, True):  # not timed: snapshots of both kinds
        run_prepared(prepared[:1], RESULTS, echo=lambda _text: None, fast_guest=fast)
    for _ in range(ROUNDS):
        for fast in (False, True):
            boots[fast].append(_boot_seconds(fast))
            started = time.monotonic()
            outcomes, _ = run_prepared(prepared, RESULTS, echo=lambda _t: None, fast_guest=fast)
            walls[fast].append(time.monotonic() - started)
            if not all(o.passed for o in outcomes):
                print(f"   {'fast' if fast else 'checked'}: not every scenario passed")
    for fast, name in ((False, "checked"), (True, "fast")):
        boot, wall = statistics.median(boots[fast]), statistics.median(walls[fast])
        print(f"   {profile.name} {name}: boot median {boot:.1f}s, "
              f"22 upstream scenarios (-j 1) median {wall:.1f}s")  # fmt: skip
    ratio = statistics.median(walls[False]) / statistics.median(walls[True])
    print(f"checks_cost_ratio: {ratio:.2f}", flush=True)
