"""The outcome of one command run in the guest.

Kept in a module of its own, with no imports, so code that only handles results
(the runner, tests with recorded outputs) does not load paramiko or pexpect.
"""

from __future__ import annotations

from typing import NamedTuple


class CommandResult(NamedTuple):
    """Exit code and output of one command; unpacks as (exit_code, stdout, stderr).

    Over the serial console stderr is captured separately too, but kernel messages
    printed on the console while the command runs end up in stdout."""

    exit_code: int
    stdout: str
    stderr: str
