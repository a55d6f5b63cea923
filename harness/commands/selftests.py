"""`klp-harness selftests`: the kernel's own livepatch selftests, unmodified, in a guest."""

from __future__ import annotations

import argparse
import sys
import time

from harness.commands.common import add_kernel_arguments, selected_profiles


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_kernel_arguments(parser, multiple=True)
    parser.add_argument("--ktap", action="store_true", help="print KTAP v1 results on stdout")
    parser.add_argument(
        "--script", action="append", metavar="NAME", help="run only this script (repeatable)"
    )
    parser.add_argument(
        "--fast-guest",
        action="store_true",
        help="a guest without the kernel's memory checks (as `run --fast-guest`)",
    )


def main(args: argparse.Namespace) -> int:
    from harness.kernel.sources import fetch_sources
    from harness.runner.manager import GuestManager
    from harness.runner.suite import stderr_echo
    from harness.upstream import selftests

    failed = False
    for profile in selected_profiles(args):
        sources = fetch_sources(profile)
        stderr_echo(f"[{profile.name}] building upstream test modules")
        kos = selftests.build_modules(sources, profile)
        programs = selftests.build_programs(sources)
        scripts = args.script or sources.makefile_list("TEST_PROGS")
        with GuestManager(profile, fast_guest=args.fast_guest) as manager:
            stderr_echo(f"[{profile.name}] booting guest ({profile.release})")
            guest = manager.guest
            selftests.install(guest, sources, kos, programs)
            results = []
            started = time.monotonic()
            for script in scripts:
                result = selftests.run_script(guest, script)
                guest.check_alive()
                results.append(result)
                for case in result.cases:
                    stderr_echo(f"  {'ok    ' if case.passed else 'NOT OK'} {script}: {case.name}")
                stderr_echo(f"  {script}: {result.seconds:.1f}s")
                if result.exit_code != 0:
                    stderr_echo(f"  {script} exited {result.exit_code}:")
                    stderr_echo("\n".join(result.output.splitlines()[-15:]))
                    failed = True
            cases = [c for r in results for c in r.cases]
            stderr_echo(
                f"[{profile.name}] {sum(c.passed for c in cases)}/{len(cases)} cases passed "
                f"in {time.monotonic() - started:.1f}s (scripts only)"
            )
            failed |= not all(c.passed for c in cases)
            if args.ktap:
                sys.stdout.write(selftests.ktap(results))
    return 1 if failed else 0
