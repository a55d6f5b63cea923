"""`klp-harness render SCENARIO... [-o DIR]`: a scenario's module sources, for reading
and for attaching to bug reports.  On stdout (one scenario: each file after a
`==> NAME <==` line, as `head` prints several files), or written to DIR with its
Kbuild (`make -C <kernel build dir> M=DIR modules` builds them); several scenarios
go to DIR/<scenario>/ each."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.common import add_scenario_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_scenario_arguments(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        type=Path,
        help="directory to write (default: the sources on stdout, for one scenario)",
    )


def main(args: argparse.Namespace) -> int:
    from harness.commands.common import check_writable, load_scenario_args
    from harness.errors import UsageError
    from harness.modules.render import KBUILD, render_kbuild, render_modules, render_sources
    from harness.scenario.naming import artifact_ids

    scenarios, _folders = load_scenario_args(args.scenarios)
    if args.output is None:
        if len(scenarios) != 1:
            raise UsageError(f"{len(scenarios)} scenarios: give -o DIR to render several")
        sources = render_sources(scenarios[0])
        for name, text in sorted(sources.items()):
            sys.stdout.write(f"==> {name}.c <==\n{text.rstrip()}\n\n")
        sys.stdout.write(f"==> {KBUILD} <==\n{render_kbuild(sources)}")
        return 0
    check_writable(args.output, "-o")
    one = len(scenarios) == 1
    for scenario, artifact_id in zip(scenarios, artifact_ids(scenarios), strict=True):
        directory = args.output if one else args.output / artifact_id
        paths = render_modules(scenario, directory)
        for name in sorted(paths):
            print(paths[name])
        print(directory / KBUILD)
    return 0
