"""`klp-harness run`: run scenarios on real guests and compare with the model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.common import (
    add_kernel_arguments,
    check_writable,
    positive_int,
    selected_profiles,
)


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
    parser.add_argument(
        "-j",
        "--jobs",
        type=positive_int,
        metavar="N",
        help="guests running scenarios at once (default: one per CPU, $KLP_HARNESS_JOBS)",
    )
    parser.add_argument(
        "--shard",
        metavar="K/N",
        help="run only the K-th of N disjoint parts of the scenarios (CI matrices)",
    )
    parser.add_argument(
        "--fast-guest",
        action="store_true",
        help="guests without the kernel's memory checks (slub_debug, init_on_free, "
        "KFENCE): faster, but a corrupted heap may go unnoticed",
    )
    parser.add_argument(
        "--no-snapshot",
        action="store_true",
        help="boot guests instead of resuming the saved ready guest (and clean between scenarios)",
    )


def main(args: argparse.Namespace) -> int:
    from harness.modules.external import ModuleFiles
    from harness.report.formats import junit, ktap
    from harness.report.text import side_by_side, summary, summary_table
    from harness.runner.suite import (
        Shard,
        default_jobs,
        results_dir,
        run_suite,
        shard_key,
        stderr_echo,
    )
    from harness.scenario.loader import load_scenarios
    from harness.symbols.validate import validate_symbols

    shard = Shard.parse(args.shard) if args.shard else None
    scenarios = load_scenarios([Path(p) for p in args.scenarios], ModuleFiles())
    if shard is not None:
        scenarios = [s for s in scenarios if shard.holds(shard_key(s.path))]
        stderr_echo(f"shard {shard.index}/{shard.count}: {len(scenarios)} scenario(s)")
    profiles = selected_profiles(args, model=True)
    validate_symbols(scenarios, profiles)
    check_writable(args.results or Path("results"), "--results")
    if args.junit:
        check_writable(args.junit, "--junit", is_file=True)
    results = results_dir(args.results)
    jobs = args.jobs or default_jobs()
    outcomes = run_suite(
        scenarios,
        profiles,
        results,
        args.keep_going,
        jobs=jobs,
        snapshots=not args.no_snapshot,
        fast_guest=args.fast_guest,
    )
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
