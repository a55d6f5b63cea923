"""Benchmarks (`make bench`, `python -m harness.bench [NAME...]`).

Each module here defines one or more `bench_<name>() -> None` functions that print
their own results; `python -m harness.bench` runs every such function that takes no
arguments, module by module in name order.  Benchmarks measure, they never fail a
build: they are not timed tests.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator


def benchmarks() -> Iterator[tuple[str, Callable[[], None]]]:
    """(`module.function`, function) for every runnable bench_* in harness.bench.*."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name, func in inspect.getmembers(module, inspect.isfunction):
            if not name.startswith("bench_") or func.__module__ != module.__name__:
                continue
            params = inspect.signature(func).parameters.values()
            if any(p.default is inspect.Parameter.empty for p in params):
                continue  # a helper taking arguments, not a benchmark
            yield f"{info.name}.{name}", func
