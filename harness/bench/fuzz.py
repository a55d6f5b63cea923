"""Benchmark: fuzzing throughput, kernel-checked steps per minute on one guest.

Two runs on the default kernel, one after the other, each `-j 1`, the same seed and
budget: the worlds of wave 1 (the seven generated patches over the two base targets:
what the palette was before it covered the scenario language) and the open world
(the whole palette: actors, kprobes, the tracer, BPF, shadow fields, klp relocations,
real functions, a kernel module, triggers, checks, two-CPU guests).  Then the model
alone on the open world, for the model's own cost per step.

Figures only, no thresholds (`make bench` never fails a build).  The load average is
printed before and after: on a host whose load is above QUIET_LOAD the figures are
marked noisy, as guests of other users take CPU from this one.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

from harness.fuzz.config import SearchConfig, WorkerConfig
from harness.fuzz.judge import ModelJudge
from harness.fuzz.palette import WAVE1
from harness.fuzz.prepare import palette_modules
from harness.fuzz.search import Stats, search
from harness.fuzz.workers import run_workers
from harness.kernel.profiles import DEFAULT_PROFILE, load_profile

SECONDS = float(os.environ.get("KLP_BENCH_FUZZ_SECONDS", "120"))
SEED = 0
QUIET_LOAD = 1.5


def _quiet(_text: str) -> None:
    pass


def _load() -> str:
    one, five, _ = os.getloadavg()
    noisy = " (noisy: the host is busy)" if one > QUIET_LOAD else ""
    return f"load average {one:.2f} (5 min {five:.2f}){noisy}"


def bench_fuzz_kernel() -> None:
    profile = load_profile(DEFAULT_PROFILE)
    modules = palette_modules(profile, _quiet)
    print(f"   {profile.name}, -j 1, seed {SEED}, {SECONDS:.0f}s each; {_load()}", flush=True)
    for label, palette in (("wave1", WAVE1), ("open", None)):
        with tempfile.TemporaryDirectory(prefix="klp-bench-fuzz-") as results:
            search = SearchConfig(
                seed=SEED, seconds=SECONDS, series=profile.series, palette=palette
            )
            config = WorkerConfig(search, Path(results), profile, modules, label=label)
            summary = run_workers(config, 1, _quiet)
        histories, steps = summary.total("histories"), summary.total("steps")
        minutes = summary.seconds / 60
        print(f"   {label}: {histories} histories, {steps} steps in {minutes:.1f} min")
        print(f"fuzz_{label}_steps_per_min: {steps / minutes:.0f}")
        print(f"fuzz_{label}_histories_per_s: {histories / summary.seconds:.2f}", flush=True)
    print(f"   after: {_load()}", flush=True)


def bench_fuzz_model() -> None:
    """The model alone (`--model-only`), the open world on 6.1: its cost per step
    besides the kernel's (steering, prediction, the variants told apart)."""
    stats = Stats()
    started = time.monotonic()
    search(dataclasses.replace(SearchConfig(seed=SEED, seconds=10.0)), ModelJudge(), stats)
    seconds = time.monotonic() - started
    print(f"   {stats.histories} histories, {stats.steps} steps in {seconds:.1f}s")
    print(f"fuzz_model_steps_per_min: {60 * stats.steps / seconds:.0f}", flush=True)
