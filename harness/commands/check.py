"""`klp-harness check FILE.ko... [--check NAME=CMD] [--kernel PROFILE|all]`: a standard
life cycle of existing module files (load in order, checks, replace, disable,
unload; harness/modules/lifecycle.py) on a guest, every step compared with the model,
without writing a scenario.  `samples:NAME` names the profile's build of the
kernel's samples/livepatch/NAME.c."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands.common import (
    add_guest_arguments,
    add_kernel_arguments,
    add_results_argument,
    check_writable,
    guest_options,
    selected_profiles,
)
from harness.errors import ScenarioError, UsageError

if TYPE_CHECKING:
    from harness.kernel.profiles import KernelProfile
    from harness.scenario.types import Scenario


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
    add_kernel_arguments(parser)
    add_results_argument(parser)
    parser.add_argument(
        "--json",
        metavar="FILE",
        type=Path,
        help="write results as JSON (as `run --json`: per profile its status, reason, "
        "first differing step, time, artifacts folder)",
    )
    parser.add_argument(
        "--fast-guest",
        action="store_true",
        help="guests without the kernel's memory checks (as `run --fast-guest`)",
    )
    add_guest_arguments(parser)


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
    from harness.outcome.scenario import ScenarioOutcome
    from harness.report.formats import json_result, write_json
    from harness.report.text import failure_text, summary
    from harness.runner.prepare import PreparedScenario, stderr_echo
    from harness.runner.suite import exit_code, rerun_options, results_dir, run_prepared
    from harness.symbols.validate import validate_symbols
    from harness.upstream.samples import sample_locator

    checks = parse_checks(args.check)
    profiles = selected_profiles(args, model=True)
    options = guest_options(args)
    if args.json is not None:
        check_writable(args.json, "--json", is_file=True)
    prepared = []
    for profile in profiles:  # everything known before a guest: checked for each first
        resolver = ProfileResolver(profile, sample_locator(profile))
        scenario: Scenario | None = None
        try:
            scenario = life_cycle(args.files, checks, resolver)
            _check_objects(scenario, profile)
            if len(scenario.steps) > 0:
                validate_symbols([scenario], [profile])
        except ScenarioError as exc:
            raise _in_files(exc, args.files, scenario) from None
        item = PreparedScenario(
            scenario, profile, predict(scenario, profile.series), dict(scenario.files), None
        )
        item.artifact_id = scenario.name
        prepared.append(item)
    results = results_dir(args.results)
    outcomes: list[ScenarioOutcome] = []
    records = []
    for item in prepared:
        started = time.monotonic()
        done, _ = run_prepared(
            [item],
            results,
            echo=lambda _text: None,
            fast_guest=args.fast_guest,
            on_outcome=lambda _outcome, path: records.append(path),
            options=options,
            run_options=rerun_options(options, None, args.fast_guest),
        )
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
    if args.json is not None:
        write_json([json_result(o, p) for o, p in zip(outcomes, records, strict=True)], args.json)
    return exit_code(outcomes)


def _check_objects(scenario: Scenario, profile: KernelProfile) -> None:
    """Every object a patch names is vmlinux, one of the files given or a module of
    the kernel; else the file that names it is refused, with the kernel's sample of
    that name when there is one (the callbacks demo patches the callbacks samples)."""
    from harness.scenario.types import VMLINUX
    from harness.symbols.data import find_module_file
    from harness.upstream.samples import SAMPLE_NAMES

    given = {m.name for m in scenario.modules}
    for patch in scenario.patches:
        for obj in patch.objects:
            if obj.name == VMLINUX or obj.name in given:
                continue
            if find_module_file(profile.modules_dir, obj.name) is not None:
                continue
            samples = [f"samples:{s}" for s in SAMPLE_NAMES if s.replace("-", "_") == obj.name]
            hint = f" (the kernel's sample of that name: {samples[0]})" if samples else ""
            raise UsageError(
                f"{patch.ko}: patches {obj.name!r}, which is neither vmlinux, one of the "
                f"files given nor a module of {profile.name}: give its module file too{hint}"
            )


def _in_files(exc: ScenarioError, files: list[str], scenario: Scenario | None) -> UsageError:
    """A problem of the life cycle's scenario, said of the file it comes from (the
    scenario has no file of its own): the patch's for `patch[N]...`, else all."""
    match = re.match(r"patch\[(\d+)\]", exc.where)
    if scenario is not None and match and int(match[1]) < len(scenario.patches):
        return UsageError(f"{scenario.patches[int(match[1])].ko}: {exc.where}: {exc.message}")
    return UsageError(f"{' '.join(files)}: {exc.where}: {exc.message}")


def _mismatch_index(outcome: object) -> int:
    mismatch = getattr(outcome, "mismatch", None)
    return mismatch.index if mismatch is not None else -1
