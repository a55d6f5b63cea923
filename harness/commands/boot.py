"""`klp-harness boot [--kernel PROFILE|--kernel-dir DIR] [--keep]`: boot a guest and
show what it runs: `uname -r`, the accelerator, the boot time and the livepatch
state in /sys/kernel/livepatch.  `--keep` then opens a root shell in the guest; the
guest is stopped when that shell exits.  Its console log is kept (the newest few in
the cache, or under `--results DIR`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.common import (
    add_guest_arguments,
    add_kernel_arguments,
    add_results_argument,
    check_writable,
    guest_options,
    one_profile,
)
from harness.kernel.profiles import cache_root

LIVEPATCH_SCRIPT = """
if [ -d /sys/kernel/livepatch ]; then
    echo "/sys/kernel/livepatch exists"
    found=
    for patch in /sys/kernel/livepatch/*; do
        [ -e "$patch" ] || continue
        found=1
        echo "  $(basename "$patch"): enabled=$(cat "$patch/enabled")" \\
             "transition=$(cat "$patch/transition")"
    done
    [ -n "$found" ] || echo "  (no livepatch loaded)"
else
    echo "/sys/kernel/livepatch does not exist (kernel without CONFIG_LIVEPATCH?)"
    exit 1
fi
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_kernel_arguments(parser, one=True)
    parser.add_argument(
        "--keep", action="store_true", help="open a root shell in the guest until you exit it"
    )
    parser.add_argument(
        "--serial",
        action="store_true",
        help="with --keep: use the serial console (leave with Ctrl-]) instead of SSH",
    )
    parser.add_argument(
        "--accel", choices=("kvm", "tcg"), help="skip the KVM probe and use this accelerator"
    )
    add_results_argument(parser, "console log")
    add_guest_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from harness.guest.errors import GuestError
    from harness.guest.vm import Guest, GuestConfig

    profile = one_profile(args)
    if args.results is not None:
        check_writable(args.results, "--results")
    log_dir = args.results if args.results is not None else cache_root() / "logs"
    config = guest_options(args).apply(
        GuestConfig.for_profile(profile, log_dir=log_dir, accel=args.accel)
    )
    if args.results is None:
        _prune_logs(log_dir, keep=20)
    print(f"booting {profile.name} ({profile.release})...", flush=True)
    try:
        with Guest(config) as guest:
            release = guest.run("uname -r", check=True).stdout.strip()
            livepatch = guest.run(LIVEPATCH_SCRIPT)
            print(f"uname -r:   {release}")
            print(f"accel:      {guest.accel} ({guest.accel_reason})")
            print(
                f"boot:       {guest.boot_seconds:.1f} s to SSH "
                f"({guest.shell_seconds:.1f} s to the serial shell)"
            )
            print(f"livepatch:  {livepatch.stdout.rstrip()}")
            print(f"console:    {guest.console_log}")
            if args.keep:
                print(f"shell:      exit it to stop the guest; meanwhile: {guest.ssh_command()}")
                guest.interactive(serial=args.serial)
                guest.check_alive()  # a guest that died under the shell is an error
            return livepatch.exit_code
    except GuestError as exc:
        if exc.excerpt:
            print(exc.excerpt, file=sys.stderr)
        raise


def _prune_logs(log_dir: Path, keep: int) -> None:
    """Console logs of `boot` are kept for bug reports; only the newest few."""

    def mtime(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:  # removed meanwhile by another boot's pruning
            return 0.0

    logs = sorted(log_dir.glob("console-*.log"), key=mtime)
    for old in logs[:-keep]:
        old.unlink(missing_ok=True)
