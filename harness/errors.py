"""Exceptions that the CLI turns into one clear line and an exit code.

Anything that is the user's input being wrong (a bad scenario, an unknown kernel profile)
is a `UsageError` (exit 2); anything the environment did wrong (a crashed guest, a failed
build) is a `HarnessError` (exit 1).  Neither should ever reach the user as a traceback.
"""


class HarnessError(Exception):
    """An operation failed; str(exc) is the one-line message for the user."""

    exit_code = 1


class UsageError(HarnessError):
    """The user's input (scenario, option, profile name) is invalid."""

    exit_code = 2
