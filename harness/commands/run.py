"""`klp-harness run`: run scenarios on real guests and compare with the model.

Every scenario runs on every kernel it is meant for, whatever happens to the others
(`-x` stops at the first failure); a scenario the model refuses for a kernel, or not
meant for it, is reported as such.  A line per scenario as it finishes, KTAP on
stdout as results come, `--show`'s steps as each scenario ends."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.common import (
    add_guest_arguments,
    add_kernel_arguments,
    add_results_argument,
    add_scenario_arguments,
    add_variant_argument,
    check_writable,
    guest_options,
    load_scenario_args,
    positive_int,
    replay,
    selected_profiles,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_scenario_arguments(parser)
    add_kernel_arguments(parser)
    parser.add_argument(
        "-x",
        "--exitfirst",
        action="store_true",
        help="stop at the first failing scenario (the rest are reported as not run)",
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="run every scenario even after a failure (the default; for older command lines)",
    )
    parser.add_argument("--ktap", action="store_true", help="print KTAP v1 results on stdout")
    parser.add_argument("--junit", metavar="FILE", type=Path, help="write JUnit XML results")
    parser.add_argument(
        "--json",
        metavar="FILE",
        type=Path,
        help="write results as JSON: per scenario x profile its status, reason, first "
        "differing step, time and artifacts folder",
    )
    parser.add_argument(
        "--kcidb",
        metavar="FILE",
        type=Path,
        help="write results as KernelCI KCIDB JSON (docs/ci.md), for kcidb-submit",
    )
    parser.add_argument(
        "--kcidb-origin",
        metavar="NAME",
        default="klp_harness",
        help="the submitting lab's KCIDB origin (default: klp_harness)",
    )
    parser.add_argument(
        "--show",
        action="store_true",
        help="print every step as observed, marked against the model's prediction",
    )
    parser.add_argument(
        "--table", action="store_true", help="print a scenario x profile summary table"
    )
    add_results_argument(parser)
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
    add_variant_argument(parser)
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
    add_guest_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from harness.model.variants import parse_variant
    from harness.outcome.scenario import ScenarioOutcome
    from harness.report.formats import json_result, junit, ktap_test, write_json
    from harness.report.ktap import KtapStream
    from harness.report.text import side_by_side, summary, summary_table
    from harness.runner.prepare import stderr_echo
    from harness.runner.suite import (
        ResultLines,
        Shard,
        default_jobs,
        exit_code,
        results_dir,
        run_suite,
        shard_key,
    )
    from harness.symbols.validate import validate_symbols

    shard = Shard.parse(args.shard) if args.shard else None
    scenarios, folders = load_scenario_args(args.scenarios)
    replay(args, folders)
    variant = parse_variant(args.model_variant)
    options = guest_options(args)
    if shard is not None:
        scenarios = [s for s in scenarios if shard.holds(shard_key(s.path))]
        stderr_echo(f"shard {shard.index}/{shard.count}: {len(scenarios)} scenario(s)")
    profiles = selected_profiles(args, model=True)
    validate_symbols(scenarios, profiles)
    check_writable(args.results or Path("results"), "--results")
    for option, path in (("--junit", args.junit), ("--json", args.json), ("--kcidb", args.kcidb)):
        if path is not None:
            check_writable(path, option, is_file=True)
    results = results_dir(args.results)
    jobs = args.jobs or default_jobs()
    total = len(scenarios) * len(profiles)
    lines = ResultLines(stderr_echo, total, count=jobs > 1 and total > 1)
    stream = KtapStream(sys.stdout, total) if args.ktap else None
    folder: dict[int, Path | None] = {}  # id(outcome) -> its artifacts

    def finished(outcome: ScenarioOutcome, artifacts: Path | None) -> None:
        lines(outcome, artifacts)
        if args.show and outcome.observed:
            stderr_echo(side_by_side(outcome))
        if stream is not None:
            stream.add(ktap_test(outcome))
        folder[id(outcome)] = artifacts

    outcomes = run_suite(
        scenarios,
        profiles,
        results,
        args.exitfirst,
        jobs=jobs,
        snapshots=not args.no_snapshot,
        fast_guest=args.fast_guest,
        on_outcome=finished,
        options=options,
        variant=variant,
    )
    if stream is not None:
        stream.close()
    if args.table:
        stderr_echo(summary_table(outcomes))
    stderr_echo(summary(outcomes))
    stderr_echo(f"artifacts: {results}")
    if args.junit:
        junit(outcomes, args.junit)
    if args.json:
        write_json([json_result(o, folder.get(id(o))) for o in outcomes], args.json)
    if args.kcidb:
        from harness.report.kcidb import write_kcidb

        write_kcidb(results, args.kcidb, args.kcidb_origin)
    return exit_code(outcomes)
