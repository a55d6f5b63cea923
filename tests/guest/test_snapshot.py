"""The snapshot store's bookkeeping: keys, verification, replacement (no VM)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.guest.config import GuestConfig
from harness.guest.snapshot import META, STATE, SnapshotStore


@pytest.fixture
def config(tmp_path: Path) -> GuestConfig:
    kernel, initrd = tmp_path / "bzImage", tmp_path / "initrd.cpio.gz"
    kernel.write_bytes(b"kernel")
    initrd.write_bytes(b"initrd")
    return GuestConfig(kernel=kernel, initrd=initrd, name="p", accel="tcg")


def save(store: SnapshotStore, tmp_path: Path, content: bytes) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("key")
    with store.creating() as staging:
        store.save(staging, lambda path: path.write_bytes(content), key, {"modules": []})


def test_missing_snapshot_loads_as_none(config: GuestConfig, tmp_path: Path) -> None:
    assert SnapshotStore(config, "prep", tmp_path / "snaps").load() is None


def test_saved_snapshot_loads_with_what_was_recorded(config: GuestConfig, tmp_path: Path) -> None:
    store = SnapshotStore(config, "prep", tmp_path / "snaps")
    save(store, tmp_path, b"state" * 100)
    snapshot = store.load()
    assert snapshot is not None
    assert snapshot.saved.state.read_bytes() == b"state" * 100
    assert snapshot.extra == {"modules": []}
    assert not list((tmp_path / "snaps").glob(".p-*"))  # no staging left


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: (d / STATE).write_bytes(b"statX" * 110),  # same size, other bytes
        lambda d: (d / STATE).write_bytes(b"st"),  # truncated
        lambda d: (d / META).write_text("{"),  # meta damaged
        lambda d: (d / "id_ed25519").unlink(),  # key gone
    ],
)
def test_damaged_snapshot_is_discarded_not_used(
    config: GuestConfig, tmp_path: Path, damage: object
) -> None:
    store = SnapshotStore(config, "prep", tmp_path / "snaps")
    save(store, tmp_path, b"state" * 110)
    damage(store.directory)  # type: ignore[operator]
    assert store.load() is None
    assert not store.directory.exists()


def test_key_follows_everything_that_shapes_the_guest(config: GuestConfig, tmp_path: Path) -> None:
    root = tmp_path / "snaps"
    base = SnapshotStore(config, "prep", root).key
    assert SnapshotStore(config, "prep", root).key == base
    assert SnapshotStore(config, "other prep", root).key != base
    assert SnapshotStore(dataclasses.replace(config, memory_mib=256), "prep", root).key != base
    assert SnapshotStore(dataclasses.replace(config, memory_checks=False), "prep", root).key != base
    assert SnapshotStore(dataclasses.replace(config, cpus=2), "prep", root).key != base
    config.initrd.write_bytes(b"another initrd")
    assert SnapshotStore(config, "prep", root).key != base


def test_a_new_snapshot_replaces_older_ones_of_the_same_guest(
    config: GuestConfig, tmp_path: Path
) -> None:
    root = tmp_path / "snaps"
    old = SnapshotStore(config, "prep", root)
    save(old, tmp_path, b"old")
    new = SnapshotStore(config, "prep v2", root)
    save(new, tmp_path, b"new")
    assert not old.directory.exists()
    assert json.loads((new.directory / META).read_text())["key"] == new.key


def test_guest_variants_keep_their_own_snapshots(config: GuestConfig, tmp_path: Path) -> None:
    """A --fast-guest run must not delete the default guests' snapshot (and back)."""
    root = tmp_path / "snaps"
    default = SnapshotStore(config, "prep", root)
    fast = SnapshotStore(dataclasses.replace(config, memory_checks=False), "prep", root)
    extra = SnapshotStore(dataclasses.replace(config, append=("oops=panic",)), "prep", root)
    smp = SnapshotStore(dataclasses.replace(config, cpus=2), "prep", root)  # a scenario's cpus
    for store in (default, fast, extra, smp):
        save(store, tmp_path, b"state")
    assert all(store.load() is not None for store in (default, fast, extra, smp))
    assert len({default.directory, fast.directory, extra.directory, smp.directory}) == 4
    newer_fast = SnapshotStore(dataclasses.replace(config, memory_checks=False), "v2", root)
    save(newer_fast, tmp_path, b"new")
    assert not fast.directory.exists()  # replaced by its own kind's newer one
    assert default.load() is not None and extra.load() is not None


def test_a_snapshot_that_cannot_be_saved_is_said_once_and_the_guest_still_runs(
    config: GuestConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from harness.kernel.profiles import KernelProfile
    from harness.runner import reset
    from harness.runner.guests import GuestSource

    class FakeGuest:
        key_file = tmp_path / "id_ed25519"

        def save(self, path: Path) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    FakeGuest.key_file.write_text("key")
    dirs = (tmp_path, tmp_path, tmp_path)
    profile = KernelProfile("p", "r", "1.0", "vm", config.kernel, *dirs, livepatch=True)
    source = GuestSource(profile, snapshot_root=tmp_path / "snaps")
    guest = FakeGuest()
    monkeypatch.setattr(source, "config", lambda cpus=1: config)
    monkeypatch.setattr(source, "_resume", lambda cpus=1: None)

    def boot(cpus: int = 1) -> FakeGuest:
        source.baseline = reset.GuestBaseline(frozenset())
        return guest

    monkeypatch.setattr(source, "boot", boot)
    try:
        assert source._boot_and_save() is guest  # type: ignore[comparison-overlap]
    finally:
        source.close()
    assert len(source.stats.notes) == 1
    assert "not saved (No space left on device)" in source.stats.notes[0]
    assert SnapshotStore(config, reset.PREPARE, tmp_path / "snaps").load() is None
