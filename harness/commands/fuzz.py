"""`klp-harness fuzz`: random histories, model vs kernel, shrunk to a scenario.

Hypothesis draws module sets (patches from harness/fuzz/palette.py) and step
histories, cut at the first step the model refuses; each runs on a fresh guest
resumed from the profile's snapshot and is compared with the model step by step.
The first difference is shrunk by hypothesis, on the kernel, and kept in
--results/corpus/ as a ready-to-run scenario and its first-difference report, with a
title and a signature (`--keep-going`: search on, known findings merged).  `--kernel
all` spreads the budget over the profiles.  `--model-only` compares with the model
itself instead of a guest (with a variant: the variant vs the model), over every
series unless --kernel names one, and prints the model's branch coverage.  The run
ends with a summary (also summary.json).  See docs/fuzz.md.

hypothesis and coverage.py are the `fuzz` extra (`pip install 'klp-harness[fuzz]'`):
without them the command says so in one line.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import re
import sys
import time
from pathlib import Path

from harness.commands.common import (
    add_kernel_arguments,
    add_variant_argument,
    check_writable,
    positive_int,
    selected_profiles,
)
from harness.errors import ExitCode, HarnessError

UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """argparse type: `90`, `90s`, `10m`, `1.5h` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 90s, 10m or 1h, got {text!r}"
        )
    return float(match.group(1)) * UNITS[match.group(2)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_kernel_arguments(parser)
    parser.add_argument(
        "--budget", type=duration, default=600.0, metavar="TIME",
        help="time to generate histories (default 10m); a difference then gets --shrink-budget",
    )  # fmt: skip
    parser.add_argument(
        "--shrink-budget", type=duration, default=300.0, metavar="TIME",
        help="time to shrink a difference (default 5m)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="same seed, same histories (default 0)")
    parser.add_argument(
        "-j", "--jobs", type=positive_int, default=1, metavar="N",
        help="searches at once, each with its own seed and guests (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--model-only", action="store_true",
        help="no guests: compare with the model itself (with a variant: variant vs model)",
    )  # fmt: skip
    add_variant_argument(parser)
    parser.add_argument(
        "--max-steps", type=positive_int, default=12, metavar="N",
        help="steps drawn per history, before cutting at a refusal (default 12)",
    )  # fmt: skip
    parser.add_argument(
        "--uniform", action="store_true",
        help="draw steps uniformly from every step, not from what the model's state allows",
    )  # fmt: skip
    parser.add_argument(
        "--keep-going", action="store_true",
        help="after a difference is shrunk, search on until the budget is spent (CI schedules)",
    )  # fmt: skip
    parser.add_argument(
        "--results", "--out", dest="results", type=Path, metavar="DIR",
        help="where found histories go (default results/fuzz-<time>; --out: older spelling)",
    )  # fmt: skip
    parser.add_argument(
        "--coverage", action=argparse.BooleanOptionalAction, default=None,
        help="measure and print harness/model's branch coverage (default: with --model-only)",
    )  # fmt: skip
    parser.add_argument(
        "--fast-guest", action="store_true",
        help="guests without the kernel's memory checks (faster; corruption may go unnoticed)",
    )  # fmt: skip


FUZZ_EXTRA = ("hypothesis", "coverage")  # pyproject.toml's `fuzz` extra


def require_extra() -> None:
    """One line naming the extra that brings what fuzzing imports, if it is missing."""
    missing = [name for name in FUZZ_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise HarnessError(
            f"klp-harness fuzz needs {' and '.join(missing)}, not installed: "
            "pip install 'klp-harness[fuzz]'"
        )


def main(args: argparse.Namespace) -> int:
    require_extra()
    from harness.fuzz.campaign import kernel_sides, model_sides, run_campaign
    from harness.fuzz.config import SearchConfig, WorkerConfig
    from harness.fuzz.workers import coverage_report
    from harness.runner.prepare import stderr_echo

    out = args.results or Path("results") / time.strftime("fuzz-%Y%m%d-%H%M%S")
    check_writable(out, "--results")
    out.mkdir(parents=True, exist_ok=True)
    coverage = args.coverage if args.coverage is not None else args.model_only
    config = WorkerConfig(
        SearchConfig(
            seed=args.seed,
            seconds=args.budget,
            shrink_seconds=args.shrink_budget,
            max_steps=args.max_steps,
            variant=args.model_variant,
            uniform=args.uniform,
            keep_going=args.keep_going,
        ),
        out,
        fast_guest=args.fast_guest,
        coverage_file=(out / ".coverage") if coverage else None,
    )
    if not args.model_only:
        sides = kernel_sides(selected_profiles(args, model=True))
    elif args.kernel or args.kernel_dir:
        sides = model_sides([p.series for p in selected_profiles(args, model=True, guest=False)])
    else:
        sides = model_sides()
    what = f"model variant {args.model_variant}" if args.model_variant else "the model"
    stderr_echo(
        f"fuzz: {what} vs {', '.join(s.name for s in sides)}, seed {args.seed}, "
        f"{args.jobs} worker(s), budget {args.budget:.0f}s (+{args.shrink_budget:.0f}s to "
        f"shrink a difference), results {out}"
    )
    campaign = run_campaign(config, sides, args.jobs, stderr_echo)
    for summary in campaign.summaries:
        for error in summary.model_errors:
            stderr_echo(f"fuzz [{summary.side}]: the model failed (cut there): {error}")
    for line in campaign.lines():
        stderr_echo(f"fuzz: {line}")
    if config.coverage_file is not None and config.coverage_file.parent.is_dir():
        table = io.StringIO()
        percent = coverage_report(config.coverage_file, table)
        sys.stdout.write(table.getvalue())
        stderr_echo(f"fuzz: harness/model branch coverage {percent:.1f}%")
    if campaign.host_failed or campaign.errors:
        return ExitCode.HOST_FAILURE
    if campaign.found or campaign.met_again:
        return ExitCode.DIFFERENCE
    return ExitCode.HOST_FAILURE if campaign.worker_errors else ExitCode.OK
