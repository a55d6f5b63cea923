"""Ways a guest operation fails.

Every guest failure is a `HarnessError`, so the CLI prints one line instead of a
traceback.  `GuestCrashed` means the guest is lost: the runner must discard it and
boot a new one.  `GuestTimeout` and `CommandFailed` leave the guest usable.
"""

from __future__ import annotations

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
