"""Files the harness writes to last: caches and artifacts written whole or not at all.

Every cache (module builds, initramfs images, kernel profiles) is shared by every
checkout and outlives the process that wrote it, which may be SIGKILLed half-way or
run out of disk.  So a file is written under a temporary name in its final directory
and renamed into place (rename is atomic within a file system): a reader sees the old
file, the new one, or none, never half of one.  Checksums recorded at write time let
a reader tell a damaged entry (truncated, bit-flipped, edited) from a good one.

Temporary names carry the writer's pid, so whoever comes next can tell an abandoned
one (its writer is dead) from one still being written, and remove it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content (read in chunks: images are tens of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write `data` to `path` via a temporary file in the same directory, fsynced and
    renamed into place.  On any failure the temporary file is removed."""
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(f".{path.name}"), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def temp_prefix(stem: str) -> str:
    """`<stem>-<pid>-`: the prefix of a temporary name `sweep_abandoned` understands."""
    return f"{stem}-{os.getpid()}-"


def make_temp_dir(parent: Path, stem: str) -> Path:
    """A new private directory `<parent>/<stem>-<pid>-XXXXXXXX`."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=temp_prefix(stem), dir=parent))


def sweep_abandoned(parent: Path, stem: str) -> list[Path]:
    """Remove `<stem>-<pid>-*` entries of `parent` whose writer is no longer running
    (it was SIGKILLed or the machine rebooted, so its own cleanup never ran)."""
    pattern = re.compile(rf"{re.escape(stem)}-(\d+)-")
    removed: list[Path] = []
    try:
        entries = list(parent.glob(f"{stem}-*"))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(entry)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a pid may be reused; sweeping a live
    writer's files is what must never happen, so any doubt counts as alive)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def discard(path: Path, trash_parent: Path) -> None:
    """Take a damaged cache entry (a directory) out of use at once, by renaming it
    into `trash_parent`, then delete it; a concurrent reader sees it gone, not half
    deleted."""
    trash = make_temp_dir(trash_parent, "trash")
    with contextlib.suppress(OSError):  # already gone: another process discarded it
        path.rename(trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)
