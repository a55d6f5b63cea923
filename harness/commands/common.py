"""Options and helpers shared by the subcommands: one spelling of each option on every
verb that takes it (`--kernel PROFILE|all`, `--kernel-dir`, `--results DIR`, the
guest options, scenario files and directories)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UsageError
from harness.kernel.profiles import DEFAULT_PROFILE, KernelProfile, profile_names, resolve_profile

if TYPE_CHECKING:
    from harness.runner.options import GuestOptions
    from harness.runner.replay import ArtifactFolder
    from harness.scenario.types import Scenario


ALL = "all"


def add_kernel_arguments(parser: argparse.ArgumentParser, one: bool = False) -> None:
    """`--kernel PROFILE|all` (repeatable) and `--kernel-dir DIR`, the same on every
    verb; `one`: the verb works on one kernel (more is refused when parsed out)."""
    names = ", ".join(profile_names())
    help_text = f"kernel profile ({names}; default {DEFAULT_PROFILE})"
    if not one:
        help_text += "; repeat for several, or 'all'"
    action = parser.add_argument("--kernel", action="append", metavar="PROFILE", help=help_text)
    action.completer = lambda **_kwargs: [*profile_names(), ALL]  # type: ignore[attr-defined]
    parser.add_argument(
        "--kernel-dir", metavar="DIR", help="a built kernel tree instead of a named profile"
    )


def kernel_names(args: argparse.Namespace) -> list[str]:
    """The profile names `--kernel` gave (`all` expanded), or the default's."""
    given = args.kernel if isinstance(args.kernel, list) else [args.kernel]
    names = [n for n in given if n] or [DEFAULT_PROFILE]
    if ALL in names:
        names = profile_names()
    known = profile_names()
    for name in names:
        if name not in known:
            raise UsageError(
                f"--kernel {name}: unknown kernel profile (known: {', '.join(known)}, "
                f"{ALL}; or --kernel-dir DIR)"
            )
    return list(dict.fromkeys(names))


def selected_profiles(
    args: argparse.Namespace, model: bool = False, guest: bool = True
) -> list[KernelProfile]:
    """The profiles a command runs on, each set up on first use; `model`: the command
    compares with the model (a user's tree then says which model rules its version
    gets); `guest`: it boots guests (a user's tree then says what they lack)."""
    if args.kernel_dir:
        if args.kernel:
            raise UsageError("--kernel and --kernel-dir: give one of them")
        return [tree_profile(args.kernel_dir, guest=guest, model=model)]
    return [ensure_profile(name) for name in kernel_names(args)]


def one_profile(args: argparse.Namespace, model: bool = False) -> KernelProfile:
    """The one profile of a verb that works on one kernel."""
    if args.kernel_dir is None and len(kernel_names(args)) > 1:
        verb = getattr(args, "_verb", "this command")
        raise UsageError(f"--kernel: {verb} works on one kernel profile at a time")
    return selected_profiles(args, model=model)[0]


def ensure_profile(name: str) -> KernelProfile:
    """A named profile, fetched first if this machine does not have it yet (what
    `klp-harness setup NAME` does; its guest image, build root and samples are made
    when first needed)."""
    from harness.kernel.profiles import cache_root, load_profile

    if not (cache_root() / "kernels" / name).exists():
        from harness.commands.setup import check_config
        from harness.kernel.apt import Apt
        from harness.kernel.debian import fetch_profile

        print(f"klp-harness: kernel profile {name} is not set up: fetching it", file=sys.stderr)
        check_config(fetch_profile(name, Apt()))
    return load_profile(name)


def add_results_argument(parser: argparse.ArgumentParser, what: str = "artifacts") -> None:
    parser.add_argument(
        "--results", metavar="DIR", type=Path, help=f"{what} root (default: ./results)"
    )


def add_guest_arguments(parser: argparse.ArgumentParser) -> None:
    """virtme-ng-style guest options, the same on every verb that boots a guest."""
    group = parser.add_argument_group("guest options")
    group.add_argument(
        "--append",
        action="append",
        default=[],
        metavar="ARGS",
        help="extra kernel command-line parameters (repeatable)",
    )
    group.add_argument(
        "--memory", type=positive_int, metavar="MIB", help="guest memory in MiB (default 512)"
    )
    group.add_argument(
        "--cpus",
        type=positive_int,
        metavar="N",
        help="at least N guest CPUs (default 1; a scenario's `cpus` may ask more)",
    )
    group.add_argument(
        "--qemu-opt",
        action="append",
        default=[],
        metavar="OPT",
        help="extra QEMU arguments, split as a shell would (repeatable), e.g. "
        "--qemu-opt '-device virtio-rng-pci'",
    )


def add_variant_argument(parser: argparse.ArgumentParser) -> None:
    from harness.model.variants import DESCRIPTIONS

    parser.add_argument(
        "--model-variant",
        metavar="NAME",
        choices=[v.value for v in DESCRIPTIONS],
        help="predict with a model variant the kernel should refute (see how a wrong model "
        "is caught): " + "; ".join(f"{v.value}: {text}" for v, text in DESCRIPTIONS.items()),
    )


def guest_options(args: argparse.Namespace) -> GuestOptions:
    from harness.runner.options import GuestOptions

    append = tuple(word for text in args.append for word in shlex.split(text))
    return GuestOptions(append, args.memory, args.cpus, tuple(args.qemu_opt))


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


# ---- scenarios -------------------------------------------------------------------------------

SCENARIOS_HELP = (
    "scenario files, directories (searched for *.toml) or artifact folders of an earlier "
    "run (results/<time>/<profile>/<scenario>: the scenario as it ran)"
)


def add_scenario_arguments(parser: argparse.ArgumentParser, one: bool = False) -> None:
    if one:
        parser.add_argument(
            "scenario",
            metavar="SCENARIO",
            help="a scenario file or the artifact folder of one (results/<time>/<profile>/<name>)",
        )
    else:
        parser.add_argument("scenarios", nargs="+", metavar="SCENARIO", help=SCENARIOS_HELP)


def load_scenario_args(paths: Sequence[str]) -> tuple[list[Scenario], list[ArtifactFolder]]:
    """The scenarios named on the command line, in order, and the artifact folders
    among them (a folder, or a run's results holding several: each once per
    scenario, however many profiles it ran on)."""
    from harness.modules.external import ModuleFiles
    from harness.runner.replay import artifact_folders, load_folder, read_folder
    from harness.scenario.loader import load_scenarios

    names = ModuleFiles()
    scenarios: list[Scenario] = []
    folders: list[ArtifactFolder] = []
    seen: set[tuple[str, str]] = set()
    for raw in paths:
        path = Path(raw)
        found = artifact_folders(path)
        if not found:
            scenarios += load_scenarios([path], names)
            continue
        for directory in found:
            folder = read_folder(directory)
            folders.append(folder)
            scenario = load_folder(folder, names)
            if (folder.scenario, scenario.text) not in seen:
                seen.add((folder.scenario, scenario.text))
                scenarios.append(scenario)
    return scenarios, folders


def replay(args: argparse.Namespace, folders: Sequence[ArtifactFolder]) -> None:
    """Artifact folders run again as they ran: on the kernels they ran on (unless
    `--kernel` or `--kernel-dir` says otherwise) and with the options of the run
    that made them (guest options, model variant, `--fast-guest`; what is given now
    wins), when the folders agree on them."""
    if not folders:
        return
    if not args.kernel and not args.kernel_dir:
        profiles = list(dict.fromkeys(folder.profile for folder in folders))
        named = [name for name in profiles if not name.startswith("dir:")]
        trees = [name.removeprefix("dir:") for name in profiles if name.startswith("dir:")]
        if named:
            args.kernel = named
        else:
            args.kernel_dir = trees[0]
    recorded = {_recorded_options(folder.command) for folder in folders}
    if len(recorded) != 1:
        print("klp-harness: the folders ran with different options: none replayed", file=sys.stderr)
        return
    append, memory, cpus, qemu_opts, variant, fast = recorded.pop()
    args.append = args.append or list(append)
    args.qemu_opt = args.qemu_opt or list(qemu_opts)
    args.memory = args.memory if args.memory is not None else memory
    args.cpus = args.cpus if args.cpus is not None else cpus
    args.model_variant = args.model_variant or variant
    args.fast_guest = args.fast_guest or fast


def _recorded_options(
    command: Sequence[str],
) -> tuple[tuple[str, ...], int | None, int | None, tuple[str, ...], str | None, bool]:
    """The options of a recorded `klp-harness run ...` command line that make its
    guests and predictions (the kernel and the scenario are taken apart)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    add_guest_arguments(parser)
    parser.add_argument("--model-variant")
    parser.add_argument("--fast-guest", action="store_true")
    try:
        known, _rest = parser.parse_known_args(list(command[2:]))
    except argparse.ArgumentError as exc:
        raise UsageError(f"recorded command {shlex.join(command)!r}: {exc}") from None
    return (
        tuple(known.append),
        known.memory,
        known.cpus,
        tuple(known.qemu_opt),
        known.model_variant,
        known.fast_guest,
    )
