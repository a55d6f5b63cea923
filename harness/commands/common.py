"""Options and helpers shared by the subcommands that take scenarios and kernels."""

from __future__ import annotations

import argparse

from harness.kernels import DEFAULT_PROFILE, KernelProfile, profile_names, resolve_profile


def add_kernel_arguments(parser: argparse.ArgumentParser, multiple: bool = False) -> None:
    help_text = f"kernel profile ({', '.join(profile_names())}; default {DEFAULT_PROFILE})"
    if multiple:
        parser.add_argument(
            "--kernel",
            action="append",
            metavar="PROFILE",
            help=help_text + "; repeat for several, or 'all'",
        )
    else:
        parser.add_argument("--kernel", metavar="PROFILE", help=help_text)
    parser.add_argument(
        "--kernel-dir", metavar="DIR", help="a built kernel tree instead of a named profile"
    )


def selected_profiles(args: argparse.Namespace) -> list[KernelProfile]:
    if args.kernel_dir:
        return [resolve_profile(None, args.kernel_dir)]
    names = args.kernel if isinstance(args.kernel, list) else [args.kernel]
    names = [n for n in names if n] or [DEFAULT_PROFILE]
    if "all" in names:
        names = profile_names()
    return [resolve_profile(name) for name in dict.fromkeys(names)]
