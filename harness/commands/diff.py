"""`klp-harness diff RUN_A RUN_B`: what changed between two runs, scenario by scenario
(the same scenarios on two kernels or two trees, or a CI run against the last one):
newly failing, fixed, a first difference that moved, a kernel that behaves
differently, a time changed beyond noise.  Exit 0 when nothing changed, 1 otherwise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A", type=Path, help="results directory of one run")
    parser.add_argument("run_b", metavar="RUN_B", type=Path, help="results directory of the other")
    parser.add_argument(
        "--html", metavar="FILE", type=Path, help="also write the comparison as an HTML page"
    )


def main(args: argparse.Namespace) -> int:
    from harness.errors import UsageError
    from harness.files import atomic_write
    from harness.report.diff import diff_html, diff_runs, diff_text

    for path in (args.run_a, args.run_b):
        if not path.is_dir():
            raise UsageError(f"{path}: no such results directory")
    diff = diff_runs(args.run_a, args.run_b)
    sys.stdout.write(diff_text(diff))
    if args.html:
        atomic_write(args.html, diff_html(diff))
    return 1 if diff.changed or diff.only_a or diff.only_b else 0
