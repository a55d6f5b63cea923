"""Fixtures of the fault suite (helpers: tests.faults.common)."""

from __future__ import annotations

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
