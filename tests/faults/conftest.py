"""Fixtures of the fault suite (helpers: tests.faults.common)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from harness.kernel.profiles import load_profile
from harness.runner.guests import GuestSource
from tests.faults.common import PROFILE


@pytest.fixture(scope="session")
def fast_snapshot() -> None:
    """The profile's --fast-guest snapshot exists before a fault run starts, so that
    every guest of the run is resumed (a boot in it would be the fault's doing)."""
    source = GuestSource(load_profile(PROFILE), fast=True)
    try:
        source.take({}).guest.close()
    finally:
        source.close()


HOG = "while :; do :; done"


@pytest.fixture
def hogs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Busy loops holding every host CPU at 4x over-subscription, killed afterwards."""
    procs = [subprocess.Popen(["sh", "-c", HOG]) for _ in range(4 * (os.cpu_count() or 1))]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()
