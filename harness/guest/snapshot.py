"""Ready guests saved once and resumed many times.

Booting a TCG guest costs seconds; resuming a saved one costs a fraction of one.  So
the first guest of a profile is booted, brought to the ready state (the caller's
`prepare`: debug settings, baseline), saved with QEMU's migration to a file, and
every later guest of that profile resumes from the file, on any number of guests at
once.

A snapshot is only as good as its match with what would boot today, so its name is
a hash of everything that shapes it: the QEMU command line with per-boot values
left out (kernel, initramfs, memory, CPUs, kernel parameters, devices,
accelerator), the identity of the kernel and initramfs files, QEMU's version and
the preparation the caller describes.  Its state file's checksum is recorded when it
is saved and checked (once per process) before it is used; a damaged, partial or
foreign snapshot is removed and the caller boots instead; one the host could not
read (no descriptors left, an I/O error) is kept, and the host's failure raised.
Saving happens under a lock, so parallel guests and pytest workers make it once.

    store = SnapshotStore(config, prepare_id="...")
    snapshot = store.load()          # verified, or None
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from harness.files import exclusive, make_temp_dir, sha256_file, sweep_abandoned
from harness.guest.accel import choose_accel, default_cache
from harness.guest.config import DEFAULT_MEMORY_MIB, GuestConfig
from harness.guest.errors import HostFailure, RestoreFailed
from harness.guest.qemu import QEMU, BootSpec, qemu_args
from harness.kernel.profiles import cache_root

SNAPSHOT_FORMAT = 1  # bump when what a snapshot holds changes in a way the key misses
STATE = "state.mig"
KEY = "id_ed25519"
META = "meta.json"

_verified: dict[tuple[str, int, int, int], str] = {}  # (path, inode, size, mtime) -> sha
_verified_lock = threading.Lock()


@dataclass(frozen=True)
class SavedGuest:
    """A guest state saved by `Guest.save` (harness.guest.snapshot keeps them): the
    migration stream and the SSH key its kernel command line authorizes."""

    state: Path
    key_file: Path

    @contextlib.contextmanager
    def opened(self) -> Iterator[int]:
        """The state open for a QEMU to inherit (`incoming_args`); this process's
        copy is closed on leaving, once QEMU has started with its own."""
        try:
            fd = os.open(self.state, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:  # a snapshot replaced meanwhile
            raise RestoreFailed(f"the saved guest's state: {exc.strerror}") from None
        try:
            yield fd
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Snapshot:
    """A verified saved guest and what the caller recorded with it."""

    directory: Path
    saved: SavedGuest
    extra: dict[str, object]  # e.g. the guest's baseline, recorded by the caller


@cache
def qemu_version() -> str:
    try:
        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "unknown"
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"


def _file_id(path: Path) -> list[object]:
    info = path.stat()
    return [str(path), info.st_size, info.st_mtime_ns]


def variant_name(config: GuestConfig) -> str:
    """The name shared by the snapshots of one kind of guest, which replace each
    other: the profile's, plus a mark for guests whose kernel or QEMU command line
    differs (`--fast-guest`, another CPU count or memory size, extra parameters).
    Kinds must not replace each other: a `--fast-guest` run and a default run on the
    same cache would otherwise delete each other's snapshot and boot again every time."""
    marks = [] if config.memory_checks else ["fast"]
    if config.cpus != 1:  # a scenario's `cpus`: both kinds are used in one run
        marks.append(f"smp{config.cpus}")
    if config.memory_mib != DEFAULT_MEMORY_MIB:
        marks.append(f"m{config.memory_mib}")
    extra = (*config.append, "--", *config.qemu_opts) if config.qemu_opts else config.append
    if extra:
        marks.append(hashlib.sha256("\0".join(extra).encode()).hexdigest()[:8])
    return "-".join([config.name, *marks])


def snapshot_key(config: GuestConfig, prepare_id: str) -> str:
    """Hash of everything a saved guest depends on (see the module docstring)."""
    accel = choose_accel(config.kernel, default_cache(), requested=config.accel)
    placeholder = BootSpec(0, Path("/sockets"), "KEY", accel.args)
    argv = qemu_args(config, placeholder)
    data = {
        "format": SNAPSHOT_FORMAT,
        "argv": argv,
        "kernel": _file_id(config.kernel),
        "initrd": _file_id(config.initrd),
        "qemu": qemu_version(),
        "prepare": prepare_id,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class SnapshotStore:
    """The snapshots of one guest config, under `<cache>/snapshots/`."""

    def __init__(self, config: GuestConfig, prepare_id: str, root: Path | None = None) -> None:
        self.config = config
        self.root = root if root is not None else cache_root() / "snapshots"
        self.key = snapshot_key(config, prepare_id)
        self.variant = variant_name(config)
        self.directory = self.root / f"{self.variant}-{self.key}"
        self.damage: str | None = None  # why `load` discarded the snapshot, if it did

    # ---- reading ------------------------------------------------------------------------

    def load(self) -> Snapshot | None:
        """The snapshot, verified; None (and removed, if damaged) when unusable."""
        try:
            meta = json.loads((self.directory / META).read_text())
            state = self.directory / STATE
            if meta.get("format") != SNAPSHOT_FORMAT or meta.get("key") != self.key:
                raise ValueError("made for something else")
            if state.stat().st_size != meta["size"] or _checksum(state) != meta["sha256"]:
                raise ValueError("state file damaged")
            if not (self.directory / KEY).is_file():
                raise ValueError("key missing")
        except FileNotFoundError:
            return None
        except OSError as exc:  # EMFILE, EIO, EACCES: the host's, the snapshot may be fine
            raise HostFailure(
                f"reading the snapshot {self.directory}: {exc.strerror or exc} (on the host)"
            ) from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.damage = str(exc)
            self.discard()
            return None
        return Snapshot(self.directory, SavedGuest(state, self.directory / KEY), meta["extra"])

    def discard(self) -> None:
        """Remove the snapshot (damaged, or QEMU refused it)."""
        shutil.rmtree(self.directory, ignore_errors=True)

    # ---- writing ------------------------------------------------------------------------

    @contextlib.contextmanager
    def creating(self) -> Iterator[Path]:
        """Hold the store's lock while a snapshot is made (others wait, then `load`
        what it made); yields a private staging directory for `save`."""
        self.root.mkdir(parents=True, exist_ok=True)
        sweep_abandoned(self.root, f".{self.variant}-{self.key}")
        with exclusive(self.root / f".{self.variant}.lock"):
            staging = make_temp_dir(self.root, f".{self.variant}-{self.key}")
            try:
                yield staging
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def save(
        self,
        staging: Path,
        write_state: Callable[[Path], None],
        key_file: Path,
        extra: dict[str, object],
    ) -> Snapshot:
        """Write the state (`write_state(path)`, e.g. `Guest.save`) and a copy of the
        guest's SSH key, record the checksum, and move the staging directory into
        place; older snapshots of the same variant are removed (`<variant>-<key>`:
        the `?`s match a key, not another variant's longer name)."""
        state = staging / STATE
        write_state(state)
        shutil.copy2(key_file, staging / KEY)
        meta = {
            "format": SNAPSHOT_FORMAT,
            "key": self.key,
            "size": state.stat().st_size,
            "sha256": _checksum(state),
            "extra": extra,
        }
        (staging / META).write_text(json.dumps(meta, indent=1) + "\n")
        for old in self.root.glob(f"{self.variant}-{'?' * len(self.key)}"):
            if old.is_dir() and old.name != self.directory.name:
                shutil.rmtree(old, ignore_errors=True)
        self.discard()
        os.replace(staging, self.directory)
        return Snapshot(self.directory, SavedGuest(self.directory / STATE, self.directory / KEY),
                        extra)  # fmt: skip


def _checksum(path: Path) -> str:
    """sha256 of a state file, computed once per process per file version."""
    info = path.stat()
    ident = (str(path), info.st_ino, info.st_size, info.st_mtime_ns)
    with _verified_lock:
        known = _verified.get(ident)
    if known is None:
        known = sha256_file(path)
        with _verified_lock:
            _verified[ident] = known
    return known
