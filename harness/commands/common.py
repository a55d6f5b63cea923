"""Options and helpers shared by the subcommands that take scenarios and kernels."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import tempfile
from pathlib import Path

from harness.errors import UsageError
from harness.kernel.profiles import DEFAULT_PROFILE, KernelProfile, profile_names, resolve_profile


def add_kernel_arguments(parser: argparse.ArgumentParser, multiple: bool = False) -> None:
    help_text = f"kernel profile ({', '.join(profile_names())}; default {DEFAULT_PROFILE})"
    if multiple:
        parser.add_argument(
            "--kernel",
            action="append",
            metavar="PROFILE",
            help=help_text + "; repeat for several, or 'all'",
        )
    else:
        parser.add_argument("--kernel", metavar="PROFILE", help=help_text)
    parser.add_argument(
        "--kernel-dir", metavar="DIR", help="a built kernel tree instead of a named profile"
    )


def selected_profiles(args: argparse.Namespace, model: bool = False) -> list[KernelProfile]:
    """The profiles a command runs on; `model`: the command compares with the model
    (a user's tree then says which model rules its version gets)."""
    if args.kernel_dir:
        return [tree_profile(args.kernel_dir, guest=True, model=model)]
    names = args.kernel if isinstance(args.kernel, list) else [args.kernel]
    names = [n for n in names if n] or [DEFAULT_PROFILE]
    if "all" in names:
        names = profile_names()
    return [resolve_profile(name) for name in dict.fromkeys(names)]


def tree_profile(kernel_dir: str, *, guest: bool = False, model: bool = False) -> KernelProfile:
    """A user's tree (`--kernel-dir`), checked (refused with the recipe's path if it
    lacks something).  Said on stderr, once, before any work: for a command that
    boots a `guest`, the optional features the tree lacks; for one that compares with
    the `model`, which model rules the tree's version gets."""
    from harness.kernel import kconfig
    from harness.kernel.profiles import read_config
    from harness.model.profiles import describe_choice, profile_for

    profile = resolve_profile(None, kernel_dir)
    where = f"--kernel-dir {kernel_dir}"
    if guest:
        for warning in kconfig.check(read_config(profile.config)).warnings:
            print(f"klp-harness: warning: {where}: {warning}", file=sys.stderr)
    if model:
        profile_for(profile.series)  # older than the model knows: refused now, one line
        print(f"klp-harness: {where}: {describe_choice(profile.version)}", file=sys.stderr)
    return profile


def positive_int(text: str) -> int:
    """argparse type for counts such as `-j N`: an integer of at least 1 (make's own
    complaint about `-j -1` is its usage text and a bug-report address)."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def check_writable(path: Path, option: str = "output", is_file: bool = False) -> None:
    """Make sure `path` (a directory to create files in, or with `is_file` a file to
    write) can be written, before any work: a run should not build and boot for an
    hour and then fail to write its results.  Leaves no trace: it probes by creating
    and removing a temporary file in the nearest directory that exists.

    Raises UsageError naming `option`, e.g. "--results /proc/x: cannot create files
    in /proc: Permission denied"."""
    target = Path(path).expanduser()
    try:
        if target.exists():
            if is_file and target.is_dir():
                raise UsageError(f"{option} {path}: is a directory")
            if not is_file and not target.is_dir():
                raise UsageError(f"{option} {path}: exists and is not a directory")
            if is_file and not os.access(target, os.W_OK):
                raise UsageError(f"{option} {path}: {os.strerror(errno.EACCES)}")
        probe_dir = target if target.is_dir() else target.parent
        while not probe_dir.exists():
            probe_dir = probe_dir.parent
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror or exc}") from None
    if not probe_dir.is_dir():
        raise UsageError(f"{option} {path}: {probe_dir} is not a directory")
    try:
        _probe(probe_dir)
    except OSError as exc:
        raise UsageError(
            f"{option} {path}: cannot create files in {probe_dir}: {exc.strerror or exc}"
        ) from None


def _probe(directory: Path) -> None:
    """Create and remove a file in `directory` (os.access says yes to root on /proc
    and cannot see a read-only bind mount's quirks; trying is the only sure test)."""
    fd, name = tempfile.mkstemp(prefix=".klp-harness-probe-", dir=directory)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
