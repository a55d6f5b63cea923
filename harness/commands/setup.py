"""`klp-harness setup [PROFILE...]`: fetch kernel profiles and build their guest images.

Idempotent and fast when warm: a fetched profile is reused unless Debian has a newer
kernel of its series in apt's lists, a build root (profiles newer than the host:
harness.kernel.buildroot) is made once, and an image is rebuilt only when one of its
inputs changed.  The host's apt lists are refreshed at most once per run, and only
when a kernel cannot be found or downloaded; a private configuration's (another
suite's: harness.kernel.apt) once a day.
"""

from __future__ import annotations

import argparse
import sys
import time

from harness.errors import HarnessError
from harness.kernel.apt import Apt
from harness.kernel.debian import fetch_profile
from harness.kernel.profiles import KernelProfile, profile_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "profiles",
        nargs="*",
        metavar="PROFILE",
        help=f"kernel profiles to prepare (default: all of {', '.join(profile_names())})",
    )
    parser.add_argument("--force", action="store_true", help="rebuild the guest images")
    parser.add_argument(
        "--no-capacity",
        action="store_true",
        help="skip measuring how many guests run at once to advantage (about a minute; "
        "until it is measured, runs use one guest per CPU)",
    )


def check_config(profile: KernelProfile) -> None:
    """Debian's kernel config against what the harness needs (harness.kernel.kconfig): a
    future Debian kernel that drops an option fails here, by name, instead of in
    the scenarios; a missing optional feature is a warning."""
    from harness.kernel import kconfig
    from harness.kernel.profiles import read_config

    report = kconfig.check(read_config(profile.config))
    if not report.ok:
        raise HarnessError(report.error_line(f"{profile.name} ({profile.config})", recipe=False))
    for warning in report.warnings:
        print(f"setup: {profile.name}: warning: {warning}", file=sys.stderr)


def main(args: argparse.Namespace) -> int:
    from harness.guest.accel import choose_accel, default_cache
    from harness.guest.image import ensure_image
    from harness.kernel import buildroot
    from harness.upstream.samples import build_samples

    apt = Apt()  # the host's lists, refreshed at most once
    profiles: list[KernelProfile] = []
    for name in args.profiles or profile_names():
        started = time.monotonic()
        profile = fetch_profile(name, apt)
        check_config(profile)
        root = buildroot.root_for(profile)  # modules of a newer release build in its root
        image = ensure_image(profile, force=args.force)
        samples = build_samples(profile)  # the kernel's samples/livepatch (cached)
        profiles.append(profile)
        print(
            f"{name}: {profile.release}, livepatch {'yes' if profile.livepatch else 'NO'}, "
            + (f"build root {root.name}, " if root else "")
            + f"image {image.name}, {len(samples.modules)} sample modules "
            + f"({time.monotonic() - started:.1f} s)"
        )
    if profiles:
        accel = choose_accel(profiles[0].bzimage, default_cache())
        print(f"accelerator: {accel.name} ({accel.reason})")
        if not args.no_capacity:
            print(f"guests at once: {_capacity(profiles[0], args.force)}", flush=True)
    return 0


def _capacity(profile: KernelProfile, force: bool) -> str:
    """Measure (once per machine) how many guests run at once to advantage; this
    also makes the profile's snapshot, which every later guest resumes from."""
    from harness.runner import capacity

    jobs = None if force else capacity.cached_jobs()
    if jobs is not None:
        return f"{jobs} (measured before; --force measures again)"
    started = time.monotonic()
    throughput = capacity.measure(profile)
    jobs = capacity.record(throughput)
    rates = ", ".join(f"{k}: {v:.2f}/s" for k, v in sorted(throughput.items()))
    return (
        f"{jobs} (probe loops with 1..{max(throughput)} guests: {rates}; "
        f"{time.monotonic() - started:.0f} s)"
    )
