"""Snapshots and parallel runs on real guests: a refused snapshot is replaced, never
used; `run -j 2` leaves nothing behind whether it passes, fails or is interrupted."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.guest.snapshot import META, STATE, SnapshotStore
from harness.kernel.profiles import DEFAULT_PROFILE, load_profile
from harness.runner import reset
from harness.runner.guests import GuestSource
from tests.guest.test_vm import default_sigint, qemu_pids

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ROOT / "tests" / "scenarios" / "upstream"


def test_a_snapshot_qemu_refuses_is_replaced_by_a_boot(tmp_path: Path) -> None:
    """The damage is done to a private copy of the cache's snapshot (other runs share
    the cache); copying it instead of booting a guest to make one spares a boot."""
    profile = load_profile(DEFAULT_PROFILE)
    shared = GuestSource(profile, fast=True)
    try:
        shared.take({}).guest.close()  # the cache's snapshot exists (booted at most once)
    finally:
        shared.close()
    shared_store = SnapshotStore(shared.config(), reset.PREPARE)
    store = SnapshotStore(shared.config(), reset.PREPARE, tmp_path)
    shutil.copytree(shared_store.directory, store.directory)
    snapshot = store.load()
    assert snapshot is not None
    # A stream QEMU cannot load, with a checksum that matches it: only QEMU can tell.
    garbage = b"\x00" * 4096
    (store.directory / STATE).write_bytes(garbage)
    meta = json.loads((store.directory / META).read_text())
    meta.update(size=len(garbage), sha256=__import__("hashlib").sha256(garbage).hexdigest())
    (store.directory / META).write_text(json.dumps(meta))

    said: list[str] = []
    second = GuestSource(profile, fast=True, snapshot_root=tmp_path, notify=said.append)
    try:
        guest = second.take({}).guest
        assert guest.run("uname -r", check=True).stdout.strip() == profile.release
        assert not guest.restored  # booted: the refused snapshot was not used
        assert len(second.stats.boot_seconds) == 1
    finally:
        second.close()
    # the boot, the one long wait, is said before it starts and when it is done
    assert said[0] == f"[{profile.name}] booting a guest (1 CPU)", said
    assert said[1].startswith(f"[{profile.name}] guest booted and prepared in "), said
    replaced = store.load()
    assert replaced is not None and replaced.saved.state.stat().st_size > 1 << 20

    third = GuestSource(profile, fast=True, snapshot_root=tmp_path, notify=said.append)
    try:
        assert third.take({}).guest.restored  # the replacement is used
        assert third.stats.boot_seconds == []
    finally:
        third.close()
    assert len(said) == 2  # a resume says nothing


def run_j2(tmp_path: Path, *scenarios: Path) -> subprocess.Popen[str]:
    """`klp-harness run -j 2` as a user starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "-j", "2", "--keep-going",
         "--results", str(tmp_path / "results"), *map(str, scenarios)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_sigint,
    )  # fmt: skip


def leftovers(
    pid: int, before: tuple[set[int], set[Path]] = (set(), set())
) -> tuple[list[int], list[Path]]:
    """QEMUs and guest temp dirs of process `pid` that were not there `before` (this
    process's pytest session may keep guests of its own, e.g. a prepared next item)."""
    marker = f"klp-guest-{pid}-"
    deadline = time.monotonic() + 10
    while (qemus := set(qemu_pids(marker)) - before[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return sorted(qemus), sorted(set(Path("/tmp").glob(f"{marker}*")) - before[1])


def existing(pid: int) -> tuple[set[int], set[Path]]:
    marker = f"klp-guest-{pid}-"
    return set(qemu_pids(marker)), set(Path("/tmp").glob(f"{marker}*"))


def test_j2_run_with_a_failure_reports_each_and_leaves_nothing(tmp_path: Path) -> None:
    import dataclasses
    import os

    from harness.runner.prepare import prepare
    from harness.runner.suite import run_prepared
    from harness.scenario.loader import load_scenarios

    profile = load_profile(DEFAULT_PROFILE)
    scenarios = load_scenarios([UPSTREAM / "01_livepatch_basic.toml", UPSTREAM / "19_sysfs.toml",
                                UPSTREAM / "21_shadow_vars.toml"])  # fmt: skip
    items = prepare(scenarios, profile, echo=lambda _text: None)
    # One expectation the kernel will not meet: the first step of 19_sysfs fails.
    wrong = dataclasses.replace(items[1].predicted[0], errno=22)
    items[1].predicted = [wrong, *items[1].predicted[1:]]
    lines: list[str] = []
    before = existing(os.getpid())
    outcomes, _managers = run_prepared(items, tmp_path, echo=lines.append, jobs=2)
    assert [o.passed for o in outcomes] == [True, False, True]
    assert outcomes[1].mismatch is not None and outcomes[1].mismatch.index == 0
    finished = [line for line in lines if line.startswith("[") and "/3] " in line]
    assert len(finished) == 3, lines  # one line per scenario, with a progress count
    assert leftovers(os.getpid(), before) == ([], [])
    artifacts = {p.name for p in (tmp_path / DEFAULT_PROFILE).iterdir()}
    assert {"01_livepatch_basic", "19_sysfs", "21_shadow_vars"} <= artifacts


def test_interrupted_j2_run_leaves_nothing(tmp_path: Path) -> None:
    child = run_j2(tmp_path, UPSTREAM)
    deadline = time.monotonic() + 120
    marker = f"klp-guest-{child.pid}-"
    while len(qemu_pids(marker)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(qemu_pids(marker)) >= 2, "two guests never ran at once"
    child.send_signal(signal.SIGINT)
    child.communicate(timeout=60)
    assert child.returncode != 0
    assert leftovers(child.pid) == ([], [])
