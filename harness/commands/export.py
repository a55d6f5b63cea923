"""`klp-harness export kselftest SCENARIO... -o DIR` and `klp-harness export repro
SCENARIO -o DIR`: findings that leave the harness.

`kselftest` writes upstream-style livepatch selftests (test-<name>.sh, test modules,
the Makefile lines) whose expected transcript is the model's prediction for the
kernel profile's series; `klp-harness selftests --dir DIR` runs them in a guest.
`repro` writes a standalone reproducer (module sources, Kbuild, a Makefile, a POSIX
run.sh) for a machine without the harness.  `--expect fixed` predicts with the
model's known-bug fields turned off: the test fails on exactly the kernels that have
the bug.  A scenario that cannot be exported is refused with its reasons
(harness/export/exportable.py); the others are written, and the command exits 2 if
any was refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands.common import add_scenario_arguments

if TYPE_CHECKING:
    from harness.export.directory import Target

EXPECT_HELP = (
    "as-is: what the profile's kernel does, its known bugs included; fixed: a kernel "
    "without the model's known bugs (the test then fails where a bug is)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from harness.kernel.profiles import DEFAULT_PROFILE

    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    kselftest = kinds.add_parser(
        "kselftest",
        help="upstream-style livepatch selftests of scenarios",
        description="Scenarios as tools/testing/selftests/livepatch tests: test-<name>.sh "
        "beside functions.sh, test_modules/, Makefile.lines.",
        allow_abbrev=False,
    )
    add_scenario_arguments(kselftest)
    _output(kselftest)
    kselftest.add_argument(
        "--kernel",
        metavar="PROFILE",
        default=DEFAULT_PROFILE,
        help=f"the kernel profile whose series the transcript is for (default {DEFAULT_PROFILE})",
    )
    kselftest.add_argument(
        "--expect", choices=("as-is", "fixed"), default="as-is", help=EXPECT_HELP
    )
    repro = kinds.add_parser(
        "repro",
        help="a standalone reproducer of a scenario (no Python, no harness)",
        description="A scenario as module sources, Kbuild, a Makefile and a POSIX run.sh "
        "that prints each step's expected and observed result.",
        allow_abbrev=False,
    )
    add_scenario_arguments(repro, one=True)
    _output(repro)
    repro.add_argument(
        "--kernel",
        metavar="PROFILE",
        help="expect only this profile's series (default: every series the model knows; "
        "run.sh picks the running kernel's)",
    )
    repro.add_argument("--expect", choices=("as-is", "fixed"), default="fixed", help=EXPECT_HELP)


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", required=True, type=Path, metavar="DIR", help="where to write"
    )


def main(args: argparse.Namespace) -> int:
    from harness.commands.common import check_writable

    check_writable(args.output, "--output")
    if args.kind == "kselftest":
        return _kselftest(args)
    return _repro(args)


def _kselftest(args: argparse.Namespace) -> int:
    from harness.commands.common import load_scenario_args
    from harness.export.directory import export_kselftests
    from harness.export.expect import Expect

    target = _target(args.kernel)
    scenarios, _folders = load_scenario_args(args.scenarios)
    result = export_kselftests(scenarios, args.output, target, Expect(args.expect))
    for exported in result.exported:
        print(f"{exported.scenario.path}: {args.output / exported.script}")
    for refusal in result.refused:
        print(f"klp-harness: export: {refusal}", file=sys.stderr)
    if result.exported:
        print(f"modules: {args.output / 'test_modules'}; Makefile lines: Makefile.lines")
    return 2 if result.refused else 0


def _repro(args: argparse.Namespace) -> int:
    from harness.commands.common import load_scenario_args
    from harness.errors import UsageError
    from harness.export.expect import Expect
    from harness.export.repro import export_repro

    scenarios, _folders = load_scenario_args([args.scenario])
    if len(scenarios) != 1:
        raise UsageError(f"{args.scenario}: a reproducer is of one scenario")
    if args.kernel is not None:
        _target(args.kernel)
    series = export_repro(scenarios[0], args.output, Expect(args.expect), args.kernel)
    print(
        f"{args.output}: run.sh expecting {', '.join(series)} ({args.expect}); "
        f"build with `make` (or `make KDIR=...`), run `sh run.sh` as root"
    )
    return 0


def _target(name: str) -> Target:
    from harness.errors import UsageError
    from harness.export.directory import Target
    from harness.kernel.profiles import cache_root, load_profile, profile_names

    if name not in profile_names():
        raise UsageError(f"--kernel {name}: unknown kernel profile (known: {profile_names()})")
    series = name.removeprefix("debian-")
    version = series
    if (cache_root() / "kernels" / name).exists():  # set up: name its version
        version = load_profile(name).version
    return Target(name, series, version)
