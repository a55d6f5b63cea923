"""The one thing the runner needs from a guest: run a shell command.

Keeping it a Protocol lets the observation and step code be tested with a fake
shell and recorded outputs, without booting QEMU.
"""

from __future__ import annotations

import errno
import os
import shlex
from pathlib import Path
from typing import Protocol

from harness.guest.result import CommandResult

__all__ = ["CommandResult", "GuestLike", "Shell", "errno_from_message", "kmsg_write"]


class Shell(Protocol):
    def run(self, cmd: str, timeout: float = 30.0, check: bool = False) -> CommandResult: ...


def _strerror_table() -> dict[str, int]:
    """glibc's strerror text -> errno; guest tools use the same glibc as the host."""
    table: dict[str, int] = {}
    for code in sorted(errno.errorcode):
        table.setdefault(os.strerror(code), code)
    return table


# kmod's modprobe words two errors its own way (tools/modprobe.c, insmod()); the
# guest's klp-load prints the same.
KMOD_TEXTS = {
    "Module already in kernel": errno.EEXIST,
    "Unknown symbol in module, or unknown parameter (see dmesg)": errno.ENOENT,
}
STRERROR_TO_ERRNO = _strerror_table() | KMOD_TEXTS


def errno_from_message(message: str) -> int:
    """The errno named by the last `: <strerror>` of a tool's error message; EIO if the
    message names none (the report then shows the raw message)."""
    for line in reversed(message.strip().splitlines()):
        text = line.rsplit(": ", 1)[-1].strip()
        if text in STRERROR_TO_ERRNO:
            return STRERROR_TO_ERRNO[text]
    return errno.EIO


def kmsg_write(line: str) -> str:
    """Shell command writing one record to the kernel log, as upstream's `log` does."""
    return f"echo {shlex.quote(line)} > /dev/kmsg"


class GuestLike(Protocol):
    """What the runner uses of harness.guest.vm.Guest."""

    console_log: Path
    activity: str  # what it is doing for its user ("step 2 (load lp)"), for its errors

    def run(self, cmd: str, timeout: float = 30.0, check: bool = False) -> CommandResult: ...

    def put_file(self, local: Path, remote: str) -> None: ...

    def feed(
        self, local: Path, cmd: str, timeout: float = 120.0, check: bool = False
    ) -> CommandResult: ...

    def check_alive(self) -> None: ...
