"""Exceptions that the CLI turns into one clear line and an exit code.

Anything that is the user's input being wrong (a bad scenario, an unknown kernel profile)
is a `UsageError` (exit 2); anything the environment did wrong (a crashed guest, a failed
build) is a `HarnessError` (exit 1).  Neither should ever reach the user as a traceback.
"""

from __future__ import annotations


class HarnessError(Exception):
    """An operation failed; str(exc) is the one-line message for the user."""

    exit_code = 1


class UsageError(HarnessError):
    """The user's input (scenario, option, profile name) is invalid."""

    exit_code = 2


class ScenarioError(UsageError):
    """A scenario (or module description) is invalid.  Formats as
    `<file>: <where>: <message>`, e.g. `x.toml: patch[1].object[0].funcs[2]: ...`."""

    def __init__(self, where: str, message: str, path: str | None = None) -> None:
        self.where = where
        self.message = message
        self.path = path
        super().__init__(self._format())

    def _format(self) -> str:
        prefix = f"{self.path}: " if self.path else ""
        return f"{prefix}{self.where}: {self.message}"

    def in_file(self, path: str) -> ScenarioError:
        """The same error, attributed to a scenario file."""
        return ScenarioError(self.where, self.message, path)
