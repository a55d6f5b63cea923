"""`klp-harness report RESULTS_DIR`: draw a run's HTML report again from its artifacts
(a run copied off a CI runner, or one made before the report existed), and write its
results in KernelCI's format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results", metavar="RESULTS_DIR", type=Path, help="a run's results directory"
    )
    parser.add_argument(
        "--kcidb", metavar="FILE", type=Path, help="also write the results as KCIDB JSON"
    )
    parser.add_argument(
        "--kcidb-origin",
        metavar="NAME",
        default="klp_harness",
        help="the submitting lab's KCIDB origin (default: klp_harness)",
    )


def main(args: argparse.Namespace) -> int:
    from harness.errors import UsageError
    from harness.report.artifacts import scenario_dirs
    from harness.report.html import render_run
    from harness.report.kcidb import write_kcidb

    results: Path = args.results
    if not results.is_dir():
        raise UsageError(f"{results}: no such results directory")
    if not scenario_dirs(results):
        raise UsageError(f"{results}: no scenario results in it (results/<run>/<profile>/...)")
    index = render_run(results)
    print(index, file=sys.stderr)
    if args.kcidb:
        write_kcidb(results, args.kcidb, args.kcidb_origin)
        print(args.kcidb, file=sys.stderr)
    return 0
