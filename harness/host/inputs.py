"""Files the user names as input (a scenario, a body file, a module) and foreign bytes
read from them or from a cache.

An input is read only once it is known to be a regular file of bounded size: a FIFO
would block a read for ever, /dev/zero would fill memory.  Every parser of foreign
bytes runs inside `foreign`, so malformed input is one line and exit 2 (UsageError),
never a traceback.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import stat
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from harness.errors import UsageError
from harness.files import CHUNK

KiB, MiB = 1 << 10, 1 << 20
SCENARIO_LIMIT = 8 * MiB  # a 2000-step scenario is about 60 KiB
BODY_LIMIT = 1 * MiB  # a function body's C file
KO_LIMIT = 256 * MiB  # a module with full debug information


def read_input(path: Path, limit: int, what: str) -> bytes:
    """The bytes of `path`, an input the user named: refused in one line (UsageError)
    unless it is a regular file of at most `limit` bytes, checked before any read, so
    a FIFO never blocks and /dev/zero is never read.  Symbolic links are followed
    (the file they name is what is checked)."""
    try:
        before = os.stat(path)
        _check_input(path, before, limit, what)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        _check_input(path, info, limit, what)  # replaced between the stat and the open
        chunks, size = [], 0
        while size <= limit and (chunk := os.read(fd, min(CHUNK, limit + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if size > limit:  # grew while read
        raise UsageError(f"{path}: the {what} is larger than {_size(limit)}")
    return b"".join(chunks)


def read_input_text(path: Path, limit: int, what: str) -> str:
    """`read_input`, as UTF-8 text."""
    try:
        return read_input(path, limit, what).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: the {what} is not UTF-8 text ({exc.reason} at "
                         f"byte {exc.start})") from None  # fmt: skip


def _check_input(path: Path, info: os.stat_result, limit: int, what: str) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path}: the {what} is not a regular file ({_kind(info.st_mode)})")
    if info.st_size > limit:
        raise UsageError(
            f"{path}: the {what} has {_size(info.st_size)}, more than the {_size(limit)} allowed"
        )


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):  # fmt: skip
        if test(mode):
            return name
    return "a special file"


def _size(count: int) -> str:
    return f"{count / MiB:.1f} MiB" if count >= MiB else f"{count} bytes"


# What a parser of foreign bytes raises on malformed input, besides its own errors:
# offsets past the end, bad counts, bad encodings, compressed data that does not
# decompress, recursion through a cycle of references.
MALFORMED: tuple[type[BaseException], ...] = (
    *(struct.error, ValueError, IndexError, KeyError, TypeError, AttributeError),
    *(OverflowError, RecursionError, AssertionError, EOFError, ZeroDivisionError),
    *(zlib.error, lzma.LZMAError, MemoryError),
)


@contextlib.contextmanager
def foreign(
    path: Path | str,
    what: str,
    errors: tuple[type[BaseException], ...] = (),
    error: type[UsageError] = UsageError,
) -> Iterator[None]:
    """Read foreign bytes (a module's ELF, DWARF, BTF, modinfo, a cached record)
    inside this: malformed input becomes one line (`error`, a UsageError) naming the
    file and the parser's complaint, never a traceback.  `errors`: the parser's own
    exceptions."""
    caught: tuple[type[BaseException], ...] = MALFORMED + errors
    try:
        yield
    except UsageError:
        raise
    except caught as exc:
        raise error(f"{path}: damaged {what} ({one_line(exc)})") from None


def one_line(exc: BaseException, width: int = 160) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    first = first if len(first) <= width else first[: width - 3] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
