"""Benchmark: klp-harness against upstream's own selftest scripts, same kernel.

Runs `klp-harness selftests` (upstream's unmodified scripts in a guest) and
`klp-harness run` of the 22 equivalent scenarios (every step checked against the
model), alternating, each as the command a user types, boots and builds (cached)
included.  Prints both wall times and `harness_over_upstream`, the ratio of their
medians: below 1 the harness is faster than the scripts it replaces.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness.kernel.profiles import DEFAULT_PROFILE

ROUNDS = 2
ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ROOT / "tests" / "scenarios" / "upstream"


def _wall(argv: list[str]) -> float:
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        print(f"   `{' '.join(argv[2:])}` exited {proc.returncode}: {' / '.join(tail)}")
    return wall


def bench_upstream() -> None:
    cli = [sys.executable, "-m", "harness.cli"]
    scripts = [*cli, "selftests", "--kernel", DEFAULT_PROFILE]
    harness = [*cli, "run", "--kernel", DEFAULT_PROFILE, "--results", "/tmp/klp-bench",
               str(UPSTREAM)]  # fmt: skip
    _wall(harness)  # not timed: builds and the snapshot, as a second run would find them
    upstream_walls, harness_walls = [], []
    for _ in range(ROUNDS):
        upstream_walls.append(_wall(scripts))
        harness_walls.append(_wall(harness))
    up, ours = statistics.median(upstream_walls), statistics.median(harness_walls)
    walls = ", ".join(f"{w:.1f}s" for w in upstream_walls)
    ours_walls = ", ".join(f"{w:.1f}s" for w in harness_walls)
    print(f"   {DEFAULT_PROFILE}: upstream scripts {walls}; klp-harness run {ours_walls}")
    print(f"harness_over_upstream: {ours / up:.2f}", flush=True)
