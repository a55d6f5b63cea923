"""Exceptions that the CLI turns into one clear line and an exit code, and the exit
codes themselves.

Anything that is the user's input being wrong (a bad scenario, an unknown kernel
profile, a bad option) is a `UsageError` (exit 2); anything the host or the harness
did wrong (a guest that would not boot, a broken build environment, a harness bug) is
a `HarnessError` (exit 3).  A difference between the model and the kernel is no
exception: it is a scenario's outcome, and a run with one exits 1.  Neither error
should ever reach the user as a traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What every `klp-harness` command exits with (`klp-harness --help`, README)."""

    OK = 0  # everything ran and passed
    DIFFERENCE = 1  # the kernel did not do what the model predicts (or crashed)
    USAGE = 2  # bad input: an option, a scenario, a profile name
    HOST_FAILURE = 3  # the host or the harness failed: no result either way
    INTERRUPTED = 130  # Ctrl-C (SIGINT)
    TERMINATED = 143  # SIGTERM (SIGHUP: 129)


EXIT_CODES_HELP = """\
exit codes:
  0    every scenario passed (refused and skipped ones do not fail a run)
  1    a difference between the model and the kernel (or a kernel crash, an
       unpredicted kernel report, a predicted one that did not come)
  2    bad input or usage (options, scenario files, profile names)
  3    the host or the harness failed (a guest would not boot, a broken build
       environment, a harness bug): no verdict on the kernel
  130  interrupted (Ctrl-C); 143 terminated (SIGTERM), 129 (SIGHUP)"""


class HarnessError(Exception):
    """An operation failed; str(exc) is the one-line message for the user."""

    exit_code: int = ExitCode.HOST_FAILURE


class UsageError(HarnessError):
    """The user's input (scenario, option, profile name) is invalid."""

    exit_code = ExitCode.USAGE


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
