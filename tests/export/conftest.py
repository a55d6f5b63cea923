"""Shared by the export tests: the shipped scenarios they export, by path."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scenario.loader import load_scenario
from harness.scenario.types import Scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def shipped(relative: str) -> Scenario:
    """A shipped scenario, e.g. `coexist/03` (the file whose name starts so)."""
    directory, _, prefix = relative.partition("/")
    (path,) = sorted((SCENARIOS / directory).glob(f"{prefix}_*.toml"))
    return load_scenario(path)


@pytest.fixture
def write_scenario(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a scenario's text to a file and load it."""

    def write(text: str, name: str = "case.toml") -> Scenario:
        path = tmp_path / name
        path.write_text(text)
        return load_scenario(path)

    return write
