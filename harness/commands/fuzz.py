"""`klp-harness fuzz`: random histories, model vs kernel, shrunk to a scenario.

Hypothesis draws module sets (patches from harness/fuzz/palette.py) and step
histories, cut at the first step the model refuses; each runs on a fresh guest
resumed from the profile's snapshot and is compared with the model step by step.
The first difference is shrunk by hypothesis, on the kernel, and written to --out as
a ready-to-run scenario and its first-difference report.  `--model-only` compares
with the model itself instead of a guest (with a variant: the variant vs the model)
and prints the model's branch coverage.  See docs/fuzz.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import re
import sys
import time
from pathlib import Path

from harness.commands.common import add_kernel_arguments, check_writable, positive_int
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
    from harness.model.variants import DESCRIPTIONS

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
    parser.add_argument(
        "--model-variant", metavar="NAME", choices=[v.value for v in DESCRIPTIONS],
        help="predict with a model variant the kernel should refute: "
        + "; ".join(f"{v.value}: {text}" for v, text in DESCRIPTIONS.items()),
    )  # fmt: skip
    parser.add_argument(
        "--max-steps", type=positive_int, default=12, metavar="N",
        help="steps drawn per history, before cutting at a refusal (default 12)",
    )  # fmt: skip
    parser.add_argument(
        "--uniform", action="store_true",
        help="draw steps uniformly from every step, not from what the model's state allows",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, metavar="DIR",
        help="where found histories go (default results/fuzz-<time>)",
    )  # fmt: skip
    parser.add_argument(
        "--coverage", action=argparse.BooleanOptionalAction, default=None,
        help="measure and print harness/model's branch coverage (default: with --model-only)",
    )  # fmt: skip
    parser.add_argument(
        "--fast-guest", action="store_true",
        help="guests without the kernel's memory checks (faster; corruption may go unnoticed)",
    )  # fmt: skip


def main(args: argparse.Namespace) -> int:
    from harness.fuzz.config import SearchConfig, WorkerConfig
    from harness.fuzz.workers import coverage_report, run_workers
    from harness.runner.suite import stderr_echo

    out = args.out or Path("results") / time.strftime("fuzz-%Y%m%d-%H%M%S")
    check_writable(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    coverage = args.coverage if args.coverage is not None else args.model_only
    if coverage and importlib.util.find_spec("coverage") is None:
        stderr_echo("fuzz: coverage.py is not installed (pip install coverage): no coverage")
        coverage = False
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
        from harness.commands.common import selected_profiles

        config.search.series = selected_profiles(args, model=True)[0].series
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
    return 1 if summary.found or summary.errors else 0


def _palette_on(args: argparse.Namespace) -> tuple[KernelProfile, dict[str, Path]]:
    from harness.commands.common import selected_profiles
    from harness.fuzz.palette import PALETTE
    from harness.modules.build import build_modules
    from harness.runner.suite import stderr_echo

    profile = selected_profiles(args, model=True)[0]
    started = time.monotonic()
    built = build_modules(PALETTE, profile)
    stderr_echo(
        f"[{profile.name}] palette: {len(built.modules)} modules "
        f"({len(built.built)} built) in {time.monotonic() - started:.1f}s"
    )
    return profile, built.modules
