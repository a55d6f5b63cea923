"""Runner benchmark: what a scenario costs on a shared guest (reset) versus a fresh
boot, and the wall time of the 22 upstream selftest scenarios on the default kernel.
Figures only, no thresholds: compare the ratios printed in one run."""

from __future__ import annotations

import time
from pathlib import Path

from harness.kernels import DEFAULT_PROFILE, load_profile
from harness.runner.manager import GuestManager
from harness.runner.suite import prepare, run_prepared
from harness.scenario.loader import load_scenarios

UPSTREAM = Path(__file__).resolve().parents[2] / "tests" / "scenarios" / "upstream"
FRESH_BOOT_SAMPLES = 3


def _quiet(_text: str) -> None:
    pass


def bench_runner() -> None:
    profile = load_profile(DEFAULT_PROFILE)
    prepared = prepare(load_scenarios([UPSTREAM]), profile, echo=_quiet)
    results = Path("/tmp/klp-harness-bench")
    started = time.monotonic()
    with GuestManager(profile) as manager:
        outcomes = run_prepared(prepared, manager, results, echo=_quiet)
    wall = time.monotonic() - started
    passed = sum(o.passed for o in outcomes)
    in_scenarios = sum(o.seconds for o in outcomes)
    resets = manager.reset_seconds
    boot = manager.boot_seconds[0]
    print(f"   {profile.name}: {passed}/{len(outcomes)} upstream scenarios passed")
    print(f"   wall time {wall:.1f}s (boot {boot:.1f}s, in scenarios {in_scenarios:.1f}s)")
    reset_mean = sum(resets) / len(resets) if resets else 0.0
    shared = (wall - boot - in_scenarios) / max(1, len(outcomes))
    print(
        f"   shared guest: mean overhead {shared:.2f}s per scenario "
        f"(reset {reset_mean:.2f}s + install modules)"
    )

    fresh = []
    for item in prepared[:FRESH_BOOT_SAMPLES]:
        began = time.monotonic()
        with GuestManager(profile) as manager:
            (outcome,) = run_prepared([item], manager, results, echo=_quiet)
        fresh.append(time.monotonic() - began - outcome.seconds)
    fresh_mean = sum(fresh) / len(fresh)
    print(f"   fresh guest per scenario: mean overhead {fresh_mean:.2f}s (boot, install, stop)")
    print(f"   fresh boot / shared guest overhead ratio: {fresh_mean / shared:.1f}x")
