"""The entry of a fuzz worker's own process (`-j N`, or any run that measures coverage).

Coverage must start before anything of `harness.model` is imported, or the model's
module-level lines (its class and function definitions) count as missed: with the
`spawn` start method the child imports the module of its target function before the
target runs.  So the target lives here, in a module that imports nothing of the
model (only the plain-data config and coverage.py), and the worker module, which
imports the model, is imported by name once coverage runs.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import coverage

from harness.fuzz.config import WorkerConfig

COVERED_PACKAGE = "harness.model"
OMIT = ["*/harness/model/fuzz.py"]  # the property tests' module set, not the model
WORKERS = "harness.fuzz.workers"


def measuring(data_file: Path, suffix: str | bool = False) -> coverage.Coverage:
    """A coverage.py measurement of `harness/model`'s branches."""
    return coverage.Coverage(
        data_file=str(data_file),
        data_suffix=suffix,
        branch=True,
        source_pkgs=[COVERED_PACKAGE],
        omit=OMIT,
    )


def process_main(config: WorkerConfig, index: int, messages: Any, stop_event: Any) -> None:
    """Start coverage (if asked), then import the worker and run it; a failure is
    said to the parent, which reports it."""
    cov = None
    if config.coverage_file is not None:
        cov = measuring(config.coverage_file, f"{config.label or 'fuzz'}-w{index}")
        cov.start()
    try:
        workers = importlib.import_module(WORKERS)
        workers.work(config, index, messages.put, stop_event.is_set)
    except BaseException as exc:
        messages.put(("error", index, {"error": f"{type(exc).__name__}: {exc}"}))
        messages.put(("done", index, {}))
    finally:
        if cov is not None:
            cov.stop()
            cov.save()
