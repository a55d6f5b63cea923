"""Test order for parallel runs: the longest tests start first, one or more at the head
of every pytest-xdist worker's share (harness.pytest_plugin.order says why the share matters).

Durations come from tests/durations.toml, measured on `make test` runs; a test it does
not list counts as short.  Without xdist the long tests simply come first.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness.pytest_plugin.order import long_first, reorder

DURATIONS = Path(__file__).with_name("durations.toml")


def recorded_seconds() -> dict[str, float]:
    """Test id -> seconds, from the checked-in table."""
    table = tomllib.loads(DURATIONS.read_text())["seconds"]
    return {str(key): float(value) for key, value in table.items()}


@pytest.hookimpl(trylast=True)  # after deselection (-k, --klp-shard): order what runs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    worker_input: dict[str, Any] | None = getattr(config, "workerinput", None)
    workers = int(worker_input["workercount"]) if worker_input else None
    reorder(items, long_first([item.nodeid for item in items], recorded_seconds(), workers))
