# PYTHON_ARGCOMPLETE_OK
"""`klp-harness` command line: a thin dispatcher over `harness.commands.*`.

Each subcommand lives in its own module exposing `add_arguments(parser)` and
`main(args) -> int`.  Command modules import their heavy dependencies inside `main`,
so building the parser stays cheap and `klp-harness model` never loads paramiko.

This is also the edge where every expected failure becomes one line on stderr and an
exit code (`harness.errors.ExitCode`): UsageError (2: bad input), any other
HarnessError and an OSError from any file the user named or the harness writes (3:
the host or the harness failed), Ctrl-C (130), SIGTERM (143) and SIGHUP (129), after
the `finally` blocks below have stopped guests and builds.  A verb returns 0 or 1
itself (1: the kernel differs from the model).  Every parser refuses abbreviated
options (`--kernel` is never taken for `--kernel-series`).

Shell completion: argcomplete, through its global hook (the marker above) or
`eval "$(klp-harness completion bash)"`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from harness.errors import EXIT_CODES_HELP, ExitCode, HarnessError

# subcommand -> (module under harness.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "setup": ("setup", "fetch kernel profiles and build guest images (idempotent)"),
    "list": ("list", "list scenarios: description, kernels, features used"),
    "model": ("model", "print the reference model's prediction for scenarios"),
    "render": ("render", "render a scenario's kernel module sources"),
    "build": ("build", "build scenarios' kernel modules and check their vermagic"),
    "run": ("run", "run scenarios in guests and compare with the model"),
    "repro": ("repro", "run a scenario up to a step and open a shell in the guest"),
    "check": ("check", "a standard life cycle of module files on a guest, against the model"),
    "boot": ("boot", "boot a guest and show its livepatch state"),
    "selftests": ("selftests", "run the kernel's own livepatch selftests in a guest"),
    "export": ("export", "scenarios as upstream-style selftests or standalone reproducers"),
    "fuzz": ("fuzz", "random histories, model vs kernel, a difference shrunk to a scenario"),
    "report": ("report", "render the report of a results directory"),
    "diff": ("diff", "compare two runs' results"),
    "completion": ("completion", "print the shell completion script"),
}


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("klp-harness")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        from harness import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klp-harness",
        description="Real-kernel test harness for Linux livepatch.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"klp-harness {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(f"harness.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"harness.commands.{module_name}":
                raise
            continue  # subcommand not available in this build
        sub_parser = sub.add_parser(
            name,
            help=help_text,
            description=getattr(module, "DESCRIPTION", help_text),
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_main=module.main, _verb=name)
    return parser


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind (running every cleanup) and exit 128+N.  A
    BaseException, so no `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _termination_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP raise Terminated in the main thread for the length of a command
    (the previous handlers come back after, which matters when tests call main())."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {
        signum: signal.signal(signum, _terminate) for signum in (signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def describe_os_error(exc: OSError) -> str:
    """One line for a file system error: "<file>: <reason>" (both files for a rename)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    files = [f for f in (exc.filename, exc.filename2) if f is not None]
    if not files:
        return reason
    return f"{' -> '.join(os.fsdecode(f) for f in files)}: {reason}"


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer a shell's completion request (argcomplete sets _ARGCOMPLETE) and exit;
    nothing to do, and nothing imported, otherwise."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if argv is None:
        _complete(parser)
    args = parser.parse_args(argv)
    try:
        with _termination_signals():
            return int(args._main(args))
    except HarnessError as exc:
        return _fail(str(exc), exc.exit_code)
    except BrokenPipeError:  # `klp-harness run --ktap | head`: the reader left
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:
        return _fail(describe_os_error(exc), ExitCode.HOST_FAILURE)
    except RecursionError:
        return _fail("input nested too deeply to process (Python's recursion limit)", 2)
    except KeyboardInterrupt:
        print("klp-harness: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Terminated as exc:
        name = signal.Signals(exc.signum).name
        print(f"klp-harness: terminated by {name}", file=sys.stderr)
        return 128 + exc.signum


def _fail(message: str, code: int) -> int:
    line = " ".join(message.splitlines()) or "failed"
    print(f"klp-harness: error: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
