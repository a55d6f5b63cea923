"""`klp-harness repro`: reproduce a scenario by hand.

Builds and boots as `run` does, runs the steps up to the chosen one (comparing them
with the model as usual), then hands over an interactive shell in the guest with the
scenario's modules installed, and prints an SSH command for a second terminal.
Leaving the shell tears everything down.

Given a scenario's artifact folder (results/<time>/<profile>/<name>), it runs that
scenario as it ran there: the copy of its file, its kernel profile, the options of
the run (guest options, model variant).
"""

from __future__ import annotations

import argparse
import dataclasses
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
    one_profile,
    replay,
)
from harness.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_scenario_arguments(parser, one=True)
    parser.add_argument(
        "--until",
        metavar="STEP",
        type=int,
        help="run steps 1..STEP (numbered as in reports), then open the shell "
        "(default: all steps; 0: none)",
    )
    add_kernel_arguments(parser, one=True)
    add_results_argument(parser)
    parser.add_argument(
        "--command",
        metavar="CMD",
        help="run CMD in the guest instead of opening an interactive shell",
    )
    add_variant_argument(parser)
    parser.add_argument(
        "--fast-guest",
        action="store_true",
        help="a guest without the kernel's memory checks (as `run --fast-guest`)",
    )
    add_guest_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from harness.model.variants import parse_variant
    from harness.report.text import failure_text, result_line
    from harness.runner.manager import GuestManager
    from harness.runner.prepare import prepare, stderr_echo
    from harness.runner.suite import rerun_options, results_dir
    from harness.scenario.naming import artifact_ids, safe_component
    from harness.symbols.validate import validate_symbols

    scenarios, folders = load_scenario_args([args.scenario])
    if len(scenarios) != 1:
        raise UsageError(f"{args.scenario}: holds {len(scenarios)} scenarios; repro takes one")
    [scenario] = scenarios
    replay(args, folders)
    until = len(scenario.steps) if args.until is None else args.until
    if not 0 <= until <= len(scenario.steps):
        raise UsageError(f"--until {until}: the scenario has steps 1 to {len(scenario.steps)}")
    profile = one_profile(args, model=True)
    for folder in folders:
        if folder.profile == profile.name and folder.release != profile.release:
            stderr_echo(
                f"klp-harness: {folder.directory} ran on {folder.release}; "
                f"{profile.name} is now {profile.release}"
            )
    validate_symbols([scenario], [profile])
    check_writable(args.results or Path("results"), "--results")
    variant = parse_variant(args.model_variant)
    item = prepare([scenario], profile, variant=variant)[0]
    if item.not_run is not None:
        raise UsageError(f"{scenario.path}: {item.not_run.refused or item.not_run.skipped}")
    item.scenario = dataclasses.replace(item.scenario, steps=item.scenario.steps[:until])
    item.predicted = item.predicted[:until]
    results = results_dir(args.results)
    options = guest_options(args)
    log_dir = results / safe_component(profile.name)
    with GuestManager(
        profile,
        log_dir=log_dir,
        fast_guest=args.fast_guest,
        options=options,
        run_options=rerun_options(options, variant, args.fast_guest),
    ) as manager:
        stderr_echo(f"[{profile.name}] booting guest ({profile.release})")
        outcome = manager.run_scenario(
            item.scenario,
            item.predicted,
            item.modules,
            log_dir / artifact_ids([scenario])[0],
            lambda i, text: stderr_echo(f"    step {i + 1}/{until}: {text}"),
            keep=True,
        )
        stderr_echo(result_line(outcome))
        if not outcome.passed:
            stderr_echo(failure_text(outcome))
        guest = manager.guest
        # Steps load modules by file; a user types `modprobe NAME`, which needs the index.
        guest.run("depmod -a", timeout=120)
        if args.command is not None:
            result = guest.run(args.command, timeout=300)
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.exit_code
        stderr_echo(f"guest shell; from another terminal: {guest.ssh_command()}")
        stderr_echo("exit the shell to stop the guest")
        guest.interactive()
        guest.check_alive()  # a panic in the shell ends it: say so, exit 3
    return 0
