"""`klp-harness fuzz`: random histories, model vs kernel, shrunk to a scenario.

Hypothesis draws module sets (patches from harness/fuzz/palette.py) and step
histories, cut at the first step the model refuses; each runs on a fresh guest
resumed from the profile's snapshot and is compared with the model step by step.
The first difference is shrunk by hypothesis, on the kernel, and written to
--results as a ready-to-run scenario and its first-difference report.  `--model-only`
compares with the model itself instead of a guest (with a variant: the variant vs the
model) and prints the model's branch coverage.  See docs/fuzz.md.

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
    one_profile,
    positive_int,
)
from harness.errors import ExitCode, HarnessError
from harness.kernel.profiles import KernelProfile

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
    add_kernel_arguments(parser, one=True)
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
    from harness.fuzz.config import SearchConfig, WorkerConfig
    from harness.fuzz.workers import coverage_report, run_workers
    from harness.runner.suite import stderr_echo

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
        ),
        out,
        fast_guest=args.fast_guest,
        coverage_file=(out / ".coverage") if coverage else None,
    )
    side = "the model itself"
    if not args.model_only:
        config.profile, config.modules = _palette_on(args)
        config.search.series = config.profile.series
        side = config.profile.name
    elif args.kernel or args.kernel_dir:
        config.search.series = one_profile(args, model=True).series
    what = f"model variant {args.model_variant}" if args.model_variant else "the model"
    stderr_echo(
        f"fuzz: {what} vs {side}, seed {args.seed}, {args.jobs} worker(s), "
        f"budget {args.budget:.0f}s (+{args.shrink_budget:.0f}s to shrink), out {out}"
    )
    summary = run_workers(config, args.jobs, stderr_echo)
    stderr_echo("fuzz: " + summary.line())
    for error in summary.model_errors:
        stderr_echo(f"fuzz: the model failed (cut there): {error}")
    for error in summary.errors:
        stderr_echo(f"fuzz: {error}")
    for info in summary.found:
        stderr_echo(
            f"fuzz: difference after {info['found_after']} histories "
            f"({info['found_seconds']:.1f}s), shrunk to {info['length']} steps in "
            f"{info['shrink_runs']} runs ({info['shrink_seconds']:.1f}s): {info['toml']}"
        )
        stderr_echo(f"      report: {info['report']}")
    if config.coverage_file is not None and config.coverage_file.parent.is_dir():
        table = io.StringIO()
        percent = coverage_report(config.coverage_file, table)
        sys.stdout.write(table.getvalue())
        stderr_echo(f"fuzz: harness/model branch coverage {percent:.1f}%")
    if summary.errors:
        return ExitCode.HOST_FAILURE
    return ExitCode.DIFFERENCE if summary.found else ExitCode.OK


def _palette_on(args: argparse.Namespace) -> tuple[KernelProfile, dict[str, Path]]:
    from harness.fuzz.palette import PALETTE
    from harness.modules.build import build_modules
    from harness.runner.suite import stderr_echo

    profile = one_profile(args, model=True)
    started = time.monotonic()
    built = build_modules(PALETTE, profile)
    stderr_echo(
        f"[{profile.name}] palette: {len(built.modules)} modules "
        f"({len(built.built)} built) in {time.monotonic() - started:.1f}s"
    )
    return profile, built.modules
