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
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
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


# ---- a file cache entry with its checksum beside it -------------------------------------

SUM_SUFFIX = ".sha256"
_verified: dict[Path, tuple[int, int, int]] = {}  # path -> (inode, size, mtime) checked


def sum_path(path: Path) -> Path:
    return path.with_name(path.name + SUM_SUFFIX)


def verify_file(path: Path) -> bool:
    """Whether `path` matches the checksum recorded beside it when it was written.
    A file checked once is not re-hashed in this process while its inode, size and
    mtime stay the same."""
    try:
        info = path.stat()
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        if _verified.get(path) == stamp:
            return True
        recorded = sum_path(path).read_text().split()
        if not recorded or sha256_file(path) != recorded[0]:
            return False
    except (OSError, UnicodeDecodeError):
        return False
    _verified[path] = stamp
    return True


def publish_file(partial: Path, dest: Path) -> None:
    """Move a finished file into place and record its checksum beside it.  The file
    goes first: a death in between leaves a file without a checksum, which
    `verify_file` refuses, so it is rebuilt."""
    digest = sha256_file(partial)
    sum_path(dest).unlink(missing_ok=True)
    os.replace(partial, dest)
    atomic_write(sum_path(dest), f"{digest}  {dest.name}\n")


Builder = Callable[[Path, Path], None]  # (scratch directory, file to write)


def cached_file(
    dest: Path, build: Builder, force: bool = False, adopt: Callable[[Path], bool] | None = None
) -> Path:
    """`dest` if it matches its recorded checksum, else built now: `build` stages in
    a scratch directory beside `dest` and writes a partial file, which is renamed
    into place with its checksum.  Scratch left by a killed build is swept first.

    `adopt` checks a file written before checksums were recorded (no `.sha256` beside
    it); one it finds intact gets its checksum recorded instead of being rebuilt."""
    if not force and verify_file(dest):
        return dest
    if not force and adopt is not None and _adopted(dest, adopt):
        return dest
    sweep_abandoned(dest.parent, ".build")
    scratch = make_temp_dir(dest.parent, ".build")
    try:
        partial = scratch / dest.name
        build(scratch, partial)
        publish_file(partial, dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dest


def _adopted(dest: Path, adopt: Callable[[Path], bool]) -> bool:
    if sum_path(dest).exists() or not dest.is_file():
        return False
    try:
        if not adopt(dest):
            return False
        atomic_write(sum_path(dest), f"{sha256_file(dest)}  {dest.name}\n")
    except OSError:
        return False
    return verify_file(dest)


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an flock on `lock_file` (made if missing): processes that would make the
    same cache entry wait for the first, then find it made."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def file_safe(name: str) -> str:
    """A name (a profile's) usable in file names ("dir:/x/y" -> "dir-x-y")."""
    safe = "".join(c if c.isalnum() or c in ".-_" else "-" for c in name)
    return safe.strip("-")[:80] or "guest"
