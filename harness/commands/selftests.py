"""`klp-harness selftests`: the kernel's own livepatch selftests, unmodified, in a guest.

Each script's output, the KTAP of the scripts and the guest's console log are kept
under `--results` (results/<time>/<profile>/selftests/)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.commands.common import (
    add_guest_arguments,
    add_kernel_arguments,
    add_results_argument,
    check_writable,
    guest_options,
    selected_profiles,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_kernel_arguments(parser)
    parser.add_argument("--ktap", action="store_true", help="print KTAP v1 results on stdout")
    parser.add_argument(
        "--script", action="append", metavar="NAME", help="run only this script (repeatable)"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="run the exported selftests of DIR (klp-harness export kselftest) instead of the "
        "profile's own, beside its functions.sh",
    )
    add_results_argument(parser, "outputs and console logs")
    parser.add_argument(
        "--fast-guest",
        action="store_true",
        help="a guest without the kernel's memory checks (as `run --fast-guest`)",
    )
    add_guest_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from harness.files import atomic_write
    from harness.kernel.sources import fetch_sources
    from harness.runner.manager import GuestManager
    from harness.runner.prepare import stderr_echo
    from harness.runner.suite import results_dir
    from harness.scenario.naming import safe_component
    from harness.upstream import selftests

    profiles = selected_profiles(args)
    check_writable(args.results or Path("results"), "--results")
    root = results_dir(args.results)
    options = guest_options(args)
    failed = False
    for profile in profiles:
        sources = fetch_sources(profile)
        if args.dir is not None:
            sources = selftests.exported_sources(sources, args.dir)
        stderr_echo(f"[{profile.name}] building upstream test modules")
        kos = selftests.build_modules(sources, profile)
        programs = selftests.build_programs(sources)
        scripts = args.script or sources.makefile_list("TEST_PROGS")
        log_dir = root / safe_component(profile.name)
        outputs = log_dir / "selftests"
        with GuestManager(
            profile, log_dir=log_dir, fast_guest=args.fast_guest, options=options
        ) as manager:
            stderr_echo(f"[{profile.name}] booting guest ({profile.release})")
            guest = manager.guest
            selftests.install(guest, sources, kos, programs)
            results = []
            started = time.monotonic()
            outputs.mkdir(parents=True, exist_ok=True)
            for script in scripts:
                result = selftests.run_script(guest, script)
                guest.check_alive()
                results.append(result)
                atomic_write(outputs / f"{safe_component(script)}.log", result.output)
                for case in result.cases:
                    stderr_echo(f"  {'ok    ' if case.passed else 'NOT OK'} {script}: {case.name}")
                stderr_echo(f"  {script}: {result.seconds:.1f}s")
                if result.exit_code != 0:
                    stderr_echo(f"  {script} exited {result.exit_code}:")
                    stderr_echo("\n".join(result.output.splitlines()[-15:]))
                    failed = True
                if args.dir is not None and selftests.kernel_warned(guest):
                    manager.discard()  # a hurt kernel: the next script gets a new guest
                    guest = manager.guest
                    selftests.install(guest, sources, kos, programs)
            cases = [c for r in results for c in r.cases]
            stderr_echo(
                f"[{profile.name}] {sum(c.passed for c in cases)}/{len(cases)} cases passed "
                f"in {time.monotonic() - started:.1f}s (scripts only)"
            )
            failed |= not all(c.passed for c in cases)
            document = selftests.ktap(results)
            atomic_write(outputs / "selftests.ktap", document)
            if args.ktap:
                sys.stdout.write(document)
        stderr_echo(f"[{profile.name}] outputs: {outputs}")
    return 1 if failed else 0
