"""Host faults while a saved guest is resumed: the snapshot is kept, the host named.

A snapshot is shared by every run on the cache and costs a minute to make again, so
only its own damage may discard it (tests/faults/test_cache_faults.py).  Here the host
fails instead: QEMU is missing, the guest's temporary directory is on a full file
system, QEMU cannot bind its sockets, no descriptor is left.  Each must end in one
HostFailure naming what failed on the host, and the snapshot must still load.  The
snapshot is a private copy: other runs share the cache.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.guest.errors import HostFailure
from harness.kernel.profiles import load_profile
from harness.runner.guests import GuestSource
from tests.faults.common import PROFILE

pytestmark = pytest.mark.vm


@pytest.fixture
def source(tmp_path: Path, fast_snapshot: None) -> Iterator[GuestSource]:
    """A guest source whose snapshot is a private copy of the shared one."""
    shared = GuestSource(load_profile(PROFILE), fast=True)
    directory = shared._store(1).directory
    shared.close()
    private = tmp_path / "snapshots"
    shutil.copytree(directory, private / directory.name)
    source = GuestSource(load_profile(PROFILE), fast=True, snapshot_root=private)
    yield source
    source.close()


def kept(source: GuestSource) -> bool:
    store = source._store(1)
    return store.load() is not None and not source.stats.notes


@pytest.fixture
def temp_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private TMPDIR for the guest's sockets and keys."""
    path = Path(tempfile.mkdtemp(prefix="klp-hostfault-"))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    yield path
    while subprocess.run(["mountpoint", "-q", str(path)], check=False).returncode == 0:
        subprocess.run(["umount", "-l", str(path)], check=True)
    shutil.rmtree(path, ignore_errors=True)


def test_qemu_missing_keeps_the_snapshot(
    source: GuestSource, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source._store(1)  # the key, with QEMU's version, before QEMU goes
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(HostFailure, match=r"cannot start qemu-system-x86_64"):
        source.take({})
    monkeypatch.undo()
    assert kept(source)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system needs root")
def test_full_temp_dir_keeps_the_snapshot(source: GuestSource, temp_dir: Path) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=4", "tmpfs",
                    str(temp_dir)], check=True)  # fmt: skip
    for i in range(8):  # every inode taken
        try:
            (temp_dir / f"filler{i}").mkdir()
        except OSError:
            break
    with pytest.raises(HostFailure, match=os.strerror(28)):  # ENOSPC
        source.take({})
    assert kept(source)


def test_socket_qemu_cannot_bind_keeps_the_snapshot(source: GuestSource, temp_dir: Path) -> None:
    """A unix socket's path is limited to 108 bytes: QEMU cannot bind one deeper."""
    deep = temp_dir / ("d" * 100)
    deep.mkdir()
    tempfile.tempdir = str(deep)
    with pytest.raises(
        HostFailure, match=r"QEMU could not start on this host: .*qmp.sock.* too long"
    ):
        source.take({})
    assert kept(source)


def test_no_descriptors_left_keeps_the_snapshot(source: GuestSource) -> None:
    """Descriptors run out at each point of a resume in turn (the console log, QEMU's
    pty, the channel's and QMP's sockets, ...): from none spare upwards until the
    guest starts, every failure is the host's, names what ran out, and the snapshot
    survives it."""
    source._store(1).load()  # checksummed once: later loads only stat
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    failures: list[str] = []
    for spare in range(32):
        in_use = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + spare, hard))
        try:
            ready = source.take({})
        except HostFailure as exc:
            failures.append(str(exc))
            continue
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        ready.guest.close()
        break
    assert len(failures) >= 2, failures
    for failure in failures:
        assert re.search(rf"{os.strerror(24)}|out of pty", failure), failure
    assert kept(source)
