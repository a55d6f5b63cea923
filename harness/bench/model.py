"""Benchmark: reference model operations per second (goal >= 50,000).

One operation is one scenario step applied to the model *and* turned into a full
`StepRecord` (log, sysfs tree, refcounts, implementations), i.e. exactly what
`predict()` does per step.  Two workloads are measured separately: every shipped
scenario, and a fixed pseudo-random mix of steps over a small module set, so blocked
transitions, reverses, forces and replaces are exercised, not only the happy paths.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from harness.errors import ScenarioError
from harness.model.fuzz import FUZZ_SCENARIO, FUZZ_STEPS
from harness.model.predict import StepModel
from harness.scenario.loader import load_scenarios
from harness.scenario.step_types import Step
from harness.scenario.types import Scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "tests" / "scenarios"
SECONDS = 2.0
GOAL = 50_000


def _shipped() -> list[tuple[Scenario, list[Step]]]:
    if not SCENARIOS.is_dir():  # an installed copy without the tests
        return []
    return [(s, list(s.steps)) for s in load_scenarios([SCENARIOS])]


def _random(sequences: int = 20, length: int = 40) -> list[tuple[Scenario, list[Step]]]:

    rng = random.Random(4)
    return [
        (FUZZ_SCENARIO, [rng.choice(FUZZ_STEPS) for _ in range(length)]) for _ in range(sequences)
    ]


def _run(work: list[tuple[Scenario, list[Step]]]) -> int:
    ops = 0
    for scenario, steps in work:
        model = StepModel(scenario, strict=False)
        for index, step in enumerate(steps):
            try:
                model.step(index, step)
            except ScenarioError:
                break  # e.g. a shadow script the kernel would WARN about
            ops += 1
    return ops


def measure(
    work: list[tuple[Scenario, list[Step]]], seconds: float = SECONDS
) -> tuple[float, float]:
    """(operations per CPU second, operations per wall-clock second).

    The model is single-threaded, so CPU time is what it costs; wall time is shown too
    because it is what a user waits, and it drops when the machine is busy (guests)."""
    _run(work)  # warm up
    ops, cpu, wall = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - wall < seconds:
        ops += _run(work)
    return ops / (time.process_time() - cpu), ops / (time.perf_counter() - wall)


def bench_model() -> None:
    for label, work in (("shipped scenarios", _shipped()), ("random step mix", _random())):
        if not work:
            continue
        per_cpu, per_wall = measure(work)
        verdict = "ok" if per_cpu >= GOAL else "BELOW GOAL"
        print(
            f"   {label}: {per_cpu:,.0f} ops/s per CPU second, {per_wall:,.0f} ops/s wall "
            f"(goal >= {GOAL:,}: {verdict})"
        )
