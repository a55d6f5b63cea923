"""`klp-harness render SPEC -o DIR`: write a scenario's module sources, for reading and
for attaching to bug reports (`make -C <kernel build dir> M=DIR modules` builds them)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="scenario TOML file")
    parser.add_argument(
        "-o", "--output", metavar="DIR", type=Path, required=True, help="directory to write"
    )


def main(args: argparse.Namespace) -> int:
    from harness.commands.common import check_writable
    from harness.modules.external import ModuleFiles
    from harness.modules.render import render_modules
    from harness.scenario.loader import load_scenario

    scenario = load_scenario(args.spec, ModuleFiles())
    check_writable(args.output, "-o")
    paths = render_modules(scenario, args.output)
    for name in sorted(paths):
        print(paths[name])
    print(args.output / "Kbuild")
    return 0
