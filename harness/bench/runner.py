"""Runner benchmark: the 22 upstream selftest scenarios on the default kernel, on one
guest at a time and on several, and what each scenario costs besides its own steps.
Figures only, no thresholds: compare the ratios printed in one run.

Per-scenario overhead is the time from "the previous scenario's guest is free" to
"the first step is sent": with prefetching that is how long `take` waited for the
next guest plus nothing else, since the guest was resumed and its modules installed
while the previous scenario ran.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from harness.kernel.profiles import DEFAULT_PROFILE, load_profile
from harness.runner.prepare import prepare
from harness.runner.suite import default_jobs, run_prepared
from harness.scenario.loader import load_scenarios

UPSTREAM = Path(__file__).resolve().parents[2] / "tests" / "scenarios" / "upstream"
RESULTS = Path("/tmp/klp-harness-bench")


def _quiet(_text: str) -> None:
    pass


def bench_runner() -> None:
    profile = load_profile(DEFAULT_PROFILE)
    prepared = prepare(load_scenarios([UPSTREAM]), profile, echo=_quiet)
    run_prepared(prepared[:1], RESULTS, echo=_quiet)  # not timed: makes the snapshot
    walls = {}
    for jobs in sorted({1, default_jobs()}):
        started = time.monotonic()
        outcomes, managers = run_prepared(prepared, RESULTS, echo=_quiet, jobs=jobs)
        walls[jobs] = wall = time.monotonic() - started
        passed = sum(o.passed for o in outcomes)
        in_scenarios = sum(o.seconds for o in outcomes)
        waits = [w for m in managers for w in m.source.stats.wait_seconds]
        installs = [w for m in managers for w in m.source.stats.install_seconds]
        restores = [w for m in managers for w in m.source.stats.restore_seconds]
        print(f"   -j {jobs}: {passed}/{len(outcomes)} passed, wall {wall:.1f}s, "
              f"in scenarios {in_scenarios:.1f}s")  # fmt: skip
        if jobs == 1:
            later = waits[1:] or waits
            print(f"   -j 1: guest wait per scenario median {statistics.median(later):.3f}s "
                  f"(first {waits[0]:.2f}s); made in the background: resume median "
                  f"{statistics.median(restores):.2f}s + install median "
                  f"{statistics.median(installs):.2f}s")  # fmt: skip
            print(f"per_scenario_overhead_s: {statistics.median(later):.3f}")
            print(f"between_scenarios_s: {(wall - in_scenarios) / len(outcomes):.3f} "
                  "(wall minus steps, per scenario: artifacts, first guest, waits)")  # fmt: skip
    if len(walls) > 1:
        jobs = max(walls)
        print(f"speedup_j{jobs}_over_j1: {walls[1] / walls[jobs]:.2f}", flush=True)
