"""A damaged snapshot met by a real run: never resumed, named, replaced.

The other cache kinds are checked before any guest exists, without one: module
builds (tests/modules/test_build_cache.py), initramfs images (tests/guest/test_image.py),
profile records (tests/kernel/test_profiles.py), and the snapshot store's own
bookkeeping (tests/guest/test_snapshot.py); a snapshot whose checksum matches but
which QEMU refuses is tests/runner/test_parallel.py's.  What only a guest can show is a
run going on, on a booted guest, and the snapshot it saves in place of the damaged
one being good.  The damage is done to a private copy: other runs share the cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.guest.snapshot import STATE, SnapshotStore
from harness.kernel.profiles import load_profile
from harness.runner import reset
from harness.runner.guests import GuestSource
from tests.faults.common import PROFILE, assert_nothing_left, run_harness, scenario_copies

pytestmark = pytest.mark.vm


def test_a_corrupted_snapshot_is_replaced_during_a_run(tmp_path: Path, fast_snapshot: None) -> None:
    """One byte flipped, the size unchanged: only the checksum can tell.  (A truncated
    one fails the size check before it, on the same path: tests/guest/test_snapshot.py.)"""
    source = GuestSource(load_profile(PROFILE), fast=True)
    config = source.config()
    source.close()
    shared = SnapshotStore(config, reset.PREPARE)
    private = SnapshotStore(config, reset.PREPARE, tmp_path / "snapshots")
    shutil.copytree(shared.directory, private.directory)
    with (private.directory / STATE).open("r+b") as state:
        state.seek(state.seek(0, 2) // 2)
        byte = state.read(1)
        state.seek(-1, 1)
        state.write(bytes([byte[0] ^ 0xFF]))

    paths = scenario_copies(tmp_path / "scenarios", ["first", "second"])
    run = run_harness(tmp_path / "results", *paths,
                      env={"KLP_FAULT_SNAPSHOTS": str(private.root)})  # fmt: skip
    assert [o.status for o in run.outcomes().values()] == ["PASS", "PASS"], run.stderr
    assert run.returncode == 0
    [stats] = [line for line in run.lines if " wall; " in line]
    assert (f"snapshot {private.directory.name} discarded (state file damaged); "
            "a guest is booted to replace it") in stats  # fmt: skip
    assert " 1 boot(s)" in stats and "1 resume(s)" in stats  # the second resumed its successor
    assert SnapshotStore(config, reset.PREPARE, private.root).load() is not None
    assert [p.name for p in private.root.iterdir() if p.is_dir()] == [private.directory.name]
    assert shared.load() is not None  # the shared one was never touched
    assert_nothing_left(run)
