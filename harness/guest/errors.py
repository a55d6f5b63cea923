"""Ways a guest operation fails.

Every guest failure is a `HarnessError`, so the CLI prints one line instead of a
traceback.  `GuestCrashed` means the guest is lost: the runner must discard it and
boot a new one.  `GuestTimeout` and `CommandFailed` leave the guest usable.  `HostFailure` is the
host's doing (QEMU missing or unable to start, a host resource exhausted, a guest the
host starved or froze), not the kernel's: its `host_failure` says so to whoever
classifies an outcome, and a snapshot being resumed when it struck stays good.
"""

from __future__ import annotations

import errno
import os
import re
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.guest.result import CommandResult

if TYPE_CHECKING:
    from harness.guest.crash import Crash


class GuestError(HarnessError):
    """Something went wrong with the guest.  str(exc) is one line; `excerpt` holds
    the console output that explains it, if any."""

    def __init__(self, message: str, excerpt: str = "") -> None:
        super().__init__(message)
        self.excerpt = excerpt


class GuestCrashed(GuestError):
    """The kernel reported a crash (panic, oops, BUG, WARNING, stall, hung task) on
    the console, or QEMU exited.  `excerpt` holds the report as the console showed it.

    `fatal` tells the two apart for whoever decides what to do next: True when QEMU
    is gone or the kernel died (panic, oops: `crash.fatal`), False for a report the
    kernel survived (WARN, SLUB debug report, stall), after which the guest still
    answers (its state can be collected) but must not run another scenario."""

    def __init__(
        self, message: str, excerpt: str = "", crash: Crash | None = None, fatal: bool = True
    ) -> None:
        super().__init__(message, excerpt)
        self.crash = crash
        self.fatal = fatal


class QemuKilled(GuestCrashed):
    """QEMU was killed by a signal only another process sends (SIGKILL, SIGTERM, ...):
    the guest is lost, but not through any fault of what it ran or was resumed from
    (a saved guest QEMU was loading stays good)."""


class GuestTimeout(GuestError):
    """The guest did not answer in time (boot, a command, SSH); it may still be alive."""


class CommandFailed(GuestError):
    """`run(..., check=True)` saw a non-zero exit code."""

    def __init__(self, cmd: str, result: CommandResult) -> None:
        last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or [""]
        super().__init__(f"`{cmd}` exited with {result.exit_code}: {last[0]}")
        self.cmd = cmd
        self.result = result


class RestoreFailed(GuestError):
    """QEMU could not resume a saved guest (corrupt or incompatible state): the
    caller discards the saved state and boots instead."""


class HostFailure(GuestError):
    """The host failed the guest, not the guest's kernel: QEMU could not be started or
    exited before the guest ran (a full disk, no descriptors left, a socket it could
    not bind), or the guest was starved or frozen by the host."""

    host_failure = True


# What QEMU says when the host, not the saved state or the guest, made it fail.
_HOST_ERRNOS = (errno.ENOSPC, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EADDRINUSE,
                errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT, errno.ENOENT)  # fmt: skip
_HOST_PHRASES = re.compile(
    "|".join(
        [re.escape(os.strerror(code)) for code in _HOST_ERRNOS]
        + [
            "Failed to bind socket",
            "socket path .* is too long",
            "Could not set up host forwarding rule",
            "failed to initialize kvm",
            "Could not access KVM kernel module",
        ]
    ),
    re.IGNORECASE,
)


def host_cause(qemu_said: str) -> str | None:
    """The first line of QEMU's own output that blames the host (an errno such as
    ENOSPC or EMFILE, a socket or port it could not bind), or None."""
    for line in qemu_said.splitlines():
        if line.startswith("qemu-system") and _HOST_PHRASES.search(line):
            return line.strip()
    return None
