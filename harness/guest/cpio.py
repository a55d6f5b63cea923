"""Write a directory tree as a gzipped newc cpio archive, the initramfs format.

Written here rather than with `cpio(1)` so the archive can hold device nodes
(/dev/console) without root, and so it is reproducible: entries are sorted and
timestamps zeroed, so the same inputs give byte-identical images.
"""

from __future__ import annotations

import gzip
import os
import stat
from collections.abc import Iterator
from pathlib import Path

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(name: str, mode: int, size: int, ino: int, rdev: tuple[int, int] = (0, 0)) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (
        ino, mode, 0, 0, 1, 0, size,  # ino mode uid gid nlink mtime filesize
        0, 0, rdev[0], rdev[1],  # devmajor devminor rdevmajor rdevminor
        len(encoded), 0,  # namesize check
    )  # fmt: skip
    head = _MAGIC + b"".join(b"%08x" % f for f in fields) + encoded
    return head + _pad(len(head))


def _walk(root: Path) -> Iterator[Path]:
    """Every path under root, parents before children, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            yield base / name


class _Writer:
    def __init__(self, out: gzip.GzipFile) -> None:
        self.out = out
        self.ino = 1

    def entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        self.out.write(_header(name, mode, len(data), self.ino, rdev))
        self.out.write(data + _pad(len(data)))
        self.ino += 1

    def path(self, root: Path, path: Path) -> None:
        info = path.lstat()
        name = path.relative_to(root).as_posix()
        perms = stat.S_IMODE(info.st_mode)
        if stat.S_ISLNK(info.st_mode):
            self.entry(name, stat.S_IFLNK | 0o777, os.readlink(path).encode())
        elif stat.S_ISDIR(info.st_mode):
            self.entry(name, stat.S_IFDIR | perms)
        elif stat.S_ISREG(info.st_mode):
            self.entry(name, stat.S_IFREG | perms, path.read_bytes())
        else:
            raise ValueError(f"{path}: unsupported file type in initramfs tree")


def write_initramfs(root: Path, dest: Path, compresslevel: int = 6) -> None:
    """Archive `root` (plus /dev/console) into `dest`, gzipped."""
    with gzip.GzipFile(dest, "wb", compresslevel=compresslevel, mtime=0) as out:
        writer = _Writer(out)
        writer.entry("dev", stat.S_IFDIR | 0o755)
        # The kernel opens /dev/console for init before init can mount devtmpfs.
        writer.entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
        for path in _walk(root):
            writer.path(root, path)
        writer.entry(_TRAILER, 0)
