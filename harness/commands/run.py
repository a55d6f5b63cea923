"""`klp-harness run`: run scenarios on real guests and compare with the model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.common import add_kernel_arguments, selected_profiles


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenarios", nargs="+", metavar="SCENARIO", help="TOML files or directories"
    )
    add_kernel_arguments(parser, multiple=True)
    parser.add_argument(
        "--keep-going", action="store_true", help="run every scenario even after a failure"
    )
    parser.add_argument("--ktap", action="store_true", help="print KTAP v1 results on stdout")
    parser.add_argument("--junit", metavar="FILE", type=Path, help="write JUnit XML results")
    parser.add_argument(
        "--show",
        action="store_true",
        help="print every step as observed, marked against the model's prediction",
    )
    parser.add_argument(
        "--table", action="store_true", help="print a scenario x profile summary table"
    )
    parser.add_argument(
        "--results", metavar="DIR", type=Path, help="artifacts root (default: ./results)"
    )


def main(args: argparse.Namespace) -> int:
    from harness.report.formats import junit, ktap
    from harness.report.text import side_by_side, summary, summary_table
    from harness.runner.suite import results_dir, run_suite, stderr_echo
    from harness.scenario.loader import load_scenarios

    scenarios = load_scenarios([Path(p) for p in args.scenarios])
    profiles = selected_profiles(args)
    results = results_dir(args.results)
    outcomes = run_suite(scenarios, profiles, results, args.keep_going)
    if args.show:
        for outcome in outcomes:
            stderr_echo(side_by_side(outcome))
    if args.table:
        stderr_echo(summary_table(outcomes))
    stderr_echo(summary(outcomes))
    stderr_echo(f"artifacts: {results}")
    if args.ktap:
        sys.stdout.write(ktap(outcomes))
    if args.junit:
        junit(outcomes, args.junit)
    ran_all = len(outcomes) == sum(
        1 for p in profiles for s in scenarios if not s.kernels or p.name in s.kernels
    )
    return 0 if ran_all and all(o.passed for o in outcomes) else 1
