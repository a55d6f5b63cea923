"""`klp-harness setup [PROFILE...]`: fetch kernel profiles and build their guest images.

Idempotent and fast when warm: a fetched profile is reused unless Debian has a newer
kernel of its series in apt's lists, a build root (profiles newer than the host:
harness.kernel.buildroot) is made once, and an image is rebuilt only when one of its
inputs changed.  apt's lists are refreshed at most once per run, and only when
needed: bookworm-backports was just added, or a kernel cannot be found or downloaded.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from harness.errors import HarnessError
from harness.kernel.debian import fetch_debian_profile, series_of
from harness.kernel.profiles import KernelProfile, profile_names

# Profiles whose kernels Debian 12 also publishes in bookworm-backports.
BACKPORTS_PROFILES = ("debian-6.12",)
BACKPORTS_SOURCE = Path("/etc/apt/sources.list.d/bookworm-backports.sources")
BACKPORTS_STANZA = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "profiles",
        nargs="*",
        metavar="PROFILE",
        help=f"kernel profiles to prepare (default: all of {', '.join(profile_names())})",
    )
    parser.add_argument("--force", action="store_true", help="rebuild the guest images")


def _as_root(cmd: list[str]) -> list[str]:
    return cmd if os.geteuid() == 0 else ["sudo", *cmd]


def _host_codename() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.partition("=")[2].strip().strip('"')
    except OSError:
        pass
    return ""


def _apt_sources_text() -> str:
    paths = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    texts = []
    for path in paths:
        if path.suffix in (".list", ".sources") or path.name == "sources.list":
            try:
                texts.append(path.read_text())
            except OSError:
                continue
    return "\n".join(texts)


def ensure_backports_source() -> bool:
    """Add bookworm-backports to apt's sources on a Debian 12 host that lacks it;
    True if it was added (apt's lists then need an update)."""
    if _host_codename() != "bookworm" or "bookworm-backports" in _apt_sources_text():
        return False
    print(f"setup: adding bookworm-backports to apt's sources ({BACKPORTS_SOURCE})")
    proc = subprocess.run(
        _as_root(["tee", str(BACKPORTS_SOURCE)]),
        input=BACKPORTS_STANZA,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise HarnessError(f"cannot add {BACKPORTS_SOURCE}: {tail[0]}")
    return True


class AptLists:
    """apt-get update, at most once per setup run."""

    def __init__(self) -> None:
        self.updated = False

    def update(self) -> None:
        if self.updated:
            return
        print("setup: apt-get update", flush=True)
        proc = subprocess.run(_as_root(["apt-get", "update", "-q"]), capture_output=True, text=True)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
            raise HarnessError(f"apt-get update failed: {tail[0]}")
        self.updated = True


def fetch_profile(name: str, apt: AptLists) -> KernelProfile:
    """A fetched profile; refreshes apt's lists once if the kernel is not found or
    its download fails (stale lists name packages the mirror no longer has)."""
    if series_of(name).suites:  # a private apt configuration: refreshed by fetching
        try:
            return fetch_debian_profile(name)
        except HarnessError as exc:
            if str(exc).startswith(f"kernel profile {name}"):
                raise
            raise HarnessError(f"kernel profile {name}: {exc}") from None
    if name in BACKPORTS_PROFILES and ensure_backports_source():
        apt.update()
    try:
        return fetch_debian_profile(name)
    except HarnessError as exc:
        if apt.updated:
            raise
        print(f"setup: {name}: {exc}", file=sys.stderr)
        apt.update()
        return fetch_debian_profile(name)


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

    apt = AptLists()
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
