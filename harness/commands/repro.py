"""`klp-harness repro`: reproduce a scenario by hand.

Builds and boots as `run` does, runs the steps up to the chosen one (comparing them
with the model as usual), then hands over an interactive shell in the guest with the
scenario's modules installed, and prints an SSH command for a second terminal.
Leaving the shell tears everything down.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from harness.commands.common import add_kernel_arguments, check_writable, selected_profiles
from harness.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", metavar="SCENARIO", type=Path, help="a scenario TOML file")
    parser.add_argument(
        "--until",
        metavar="STEP",
        type=int,
        help="run steps 1..STEP, then open the shell (default: all steps)",
    )
    add_kernel_arguments(parser)
    parser.add_argument(
        "--command",
        metavar="CMD",
        help="run CMD in the guest instead of opening an interactive shell",
    )


def main(args: argparse.Namespace) -> int:
    from harness.modules.external import ModuleFiles
    from harness.report.text import failure_text, result_line
    from harness.runner.manager import GuestManager
    from harness.runner.suite import prepare, results_dir, stderr_echo
    from harness.scenario.loader import load_scenario
    from harness.scenario.naming import artifact_ids, safe_component
    from harness.symbols.validate import validate_symbols

    scenario = load_scenario(args.scenario, ModuleFiles())
    until = len(scenario.steps) if args.until is None else args.until
    if not 0 <= until <= len(scenario.steps):
        raise UsageError(f"--until {until}: the scenario has {len(scenario.steps)} steps")
    profile = selected_profiles(args, model=True)[0]
    validate_symbols([scenario], [profile])
    check_writable(Path("results"), "results directory")
    item = prepare([scenario], profile)[0]
    item.scenario = dataclasses.replace(scenario, steps=scenario.steps[:until])
    item.predicted = item.predicted[:until]
    results = results_dir()
    with GuestManager(profile, log_dir=results / safe_component(profile.name)) as manager:
        stderr_echo(f"[{profile.name}] booting guest ({profile.release})")
        outcome = manager.run_scenario(
            item.scenario,
            item.predicted,
            item.modules,
            results / safe_component(profile.name) / artifact_ids([scenario])[0],
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
        guest.check_alive()  # a panic in the shell ends it: say so, exit 1
    return 0
