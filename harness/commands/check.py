"""`klp-harness check FILE.ko... [--check NAME=CMD] [--kernel PROFILE]`: a standard
life cycle of existing module files (load in order, checks, replace, disable,
unload; harness/modules/lifecycle.py) on a guest, every step compared with the model,
without writing a scenario.  `samples:NAME` names the profile's build of the
kernel's samples/livepatch/NAME.c."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.commands.common import add_kernel_arguments, selected_profiles
from harness.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="+", metavar="FILE.ko", help="module files in load order (or samples:NAME)"
    )
    parser.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="NAME=CMD",
        help="a guest command that passes exactly while livepatch NAME is in effect "
        "(kpatch's LOADED-test convention); repeatable",
    )
    add_kernel_arguments(parser, multiple=True)
    parser.add_argument(
        "--results", metavar="DIR", type=Path, help="artifacts root (default: ./results)"
    )


def parse_checks(values: list[str]) -> dict[str, str]:
    checks: dict[str, str] = {}
    for value in values:
        name, sep, command = value.partition("=")
        if not sep or not name or not command.strip():
            raise UsageError(f"--check {value!r}: expected NAME=COMMAND")
        checks[name.replace("-", "_")] = command
    return checks


def main(args: argparse.Namespace) -> int:
    from harness.model import predict
    from harness.modules.external import ProfileResolver
    from harness.modules.lifecycle import life_cycle
    from harness.report.text import failure_text, summary
    from harness.runner.suite import PreparedScenario, results_dir, run_prepared, stderr_echo
    from harness.upstream.samples import sample_locator

    checks = parse_checks(args.check)
    profiles = selected_profiles(args, model=True)
    prepared = []
    for profile in profiles:  # everything known before a guest: checked for each first
        resolver = ProfileResolver(profile, sample_locator(profile))
        scenario = life_cycle(args.files, checks, resolver)
        if len(scenario.steps) > 0:
            from harness.symbols.validate import validate_symbols

            validate_symbols([scenario], [profile])
        item = PreparedScenario(
            scenario, profile, predict(scenario, profile.series), dict(scenario.files), None
        )
        item.artifact_id = scenario.name
        prepared.append(item)
    results = results_dir(args.results)
    outcomes = []
    for item in prepared:
        started = time.monotonic()
        done, _ = run_prepared([item], results, echo=lambda _text: None)
        outcome = done[0]
        for record in outcome.observed:
            verdict = "ok" if record.index != _mismatch_index(outcome) else "DIFFERS"
            extra = "".join(f"  {k} = {v}" for k, v in record.ran.items())
            print(f"[{item.profile.name}] {record.index + 1:2}. {record.step:<48} {verdict}{extra}")
        if not outcome.passed:
            stderr_echo(failure_text(outcome))
        print(
            f"[{item.profile.name}] {'PASS' if outcome.passed else 'FAIL'}: "
            f"{len(outcome.observed)}/{len(item.predicted)} steps as the model predicts "
            f"({time.monotonic() - started:.1f} s)"
        )
        outcomes.append(outcome)
    stderr_echo(summary(outcomes))
    stderr_echo(f"artifacts: {results}")
    sys.stdout.flush()
    return 0 if all(o.passed for o in outcomes) else 1


def _mismatch_index(outcome: object) -> int:
    mismatch = getattr(outcome, "mismatch", None)
    return mismatch.index if mismatch is not None else -1
