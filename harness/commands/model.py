"""`klp-harness model SCENARIO... [--json] [--kernel PROFILE|all | --kernel-series X.Y]`.

Prints what the reference model predicts for each step, without any guest: the log
lines, the errno, and whatever changed in sysfs, module refcounts, function
implementations and the pending transition.  Useful to write a scenario (see what it
will check before building anything) and to read a mismatch report.

Every file is predicted for every kernel asked for that it is meant for (`kernels =`);
one the model refuses on a kernel is said with the reason, and the others go on: the
command fails (exit 2) only for a file that is invalid.  With a profile's symbols
recorded (by the first `build` or `run` on it), the functions a scenario patches are
checked against them, as `build` does; without, it says they were not.

Steps are numbered from 1, as in `run`'s reports and `repro --until`; the JSON
records keep the 0-based `index` of the step records and add `number`.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from dataclasses import dataclass, field
from typing import TextIO

from harness.commands.common import (
    add_kernel_arguments,
    add_scenario_arguments,
    kernel_names,
    load_scenario_args,
)
from harness.kernel.profiles import KernelProfile
from harness.outcome.record import StepRecord
from harness.scenario.types import Scenario


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_scenario_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the predicted records as JSON")
    add_kernel_arguments(parser)
    parser.add_argument(
        "--kernel-series",
        metavar="SERIES",
        help="a bare kernel series to model instead of a profile's: 6.1, 6.12, 7.3, or any "
        "X.Y from 6.1 on",
    )


@dataclass(frozen=True)
class Kernel:
    """A kernel to predict for: a profile (by name: its series needs no fetching) or a
    bare series."""

    name: str  # the profile's name, or `debian-<series>` for a bare series
    series: str
    label: str  # what the output calls it
    # The profile if this machine has it (its symbols, its build of module files);
    # the model itself needs only the series.
    profile: KernelProfile | None = None


@dataclass
class Prediction:
    scenario: Scenario
    kernel: Kernel
    records: list[StepRecord] = field(default_factory=list)
    refused: str | None = None
    skipped: str | None = None

    @property
    def status(self) -> str:
        return "refused" if self.refused else "skipped" if self.skipped else "predicted"


def main(args: argparse.Namespace) -> int:
    from harness.model.profiles import profile_for

    kernels = _kernels(args)
    for kernel in kernels:
        profile_for(kernel.series)  # unknown series: one line, exit 2
    scenarios, _folders = load_scenario_args(args.scenarios)
    _check_symbols(scenarios, kernels)
    predictions = [_predict(scenario, kernel) for scenario in scenarios for kernel in kernels]
    try:
        write(predictions, args.json, sys.stdout)
    except BrokenPipeError:  # `klp-harness model ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _kernels(args: argparse.Namespace) -> list[Kernel]:
    from harness.errors import UsageError

    if args.kernel_series:
        if args.kernel or args.kernel_dir:
            raise UsageError("--kernel-series: give it or a kernel (--kernel, --kernel-dir)")
        series = args.kernel_series
        name = f"debian-{series}"
        return [Kernel(name, series, series, _set_up(name))]
    if args.kernel_dir:
        from harness.commands.common import tree_profile

        profile = tree_profile(args.kernel_dir, model=True)
        return [Kernel(profile.name, profile.series, profile.name, profile)]
    return [
        Kernel(name, name.removeprefix("debian-"), name, _set_up(name))
        for name in kernel_names(args)
    ]


def _set_up(name: str) -> KernelProfile | None:
    """The named profile if this machine has it."""
    from harness.kernel.profiles import cache_root, load_profile, profile_names

    if name not in profile_names() or not (cache_root() / "kernels" / name).exists():
        return None
    return load_profile(name)


def _applies(scenario: Scenario, kernel: Kernel) -> bool:
    return not scenario.kernels or kernel.name in scenario.kernels


def _check_symbols(scenarios: list[Scenario], kernels: list[Kernel]) -> None:
    """The functions the scenarios patch, against each profile's recorded symbols (a
    typo is refused as `build` refuses it); said once per kernel when not possible."""
    from harness.symbols.record import is_recorded, read_record, record_dir
    from harness.symbols.validate import check_scenario, needs_symbols

    for kernel in kernels:
        wanted = [
            s for s in scenarios if _applies(s, kernel) and not s.external and needs_symbols(s)
        ]
        if not wanted:
            continue
        profile = kernel.profile
        if profile is None:
            _note(f"{kernel.label}: symbols not checked: profile {kernel.name} is not set up")
            continue
        directory = record_dir(profile)
        if not is_recorded(directory):
            _note(
                f"{kernel.label}: symbols not checked: none recorded yet (the first "
                f"`klp-harness build` or `run` on {profile.name} records them)"
            )
            continue
        record = read_record(directory)
        for scenario in wanted:
            check_scenario(scenario, profile, record)


def _note(text: str) -> None:
    print(f"klp-harness: model: {text}", file=sys.stderr)


def _predict(scenario: Scenario, kernel: Kernel) -> Prediction:
    from harness.errors import ScenarioError
    from harness.model import predict
    from harness.runner.prepare import not_for, refusal

    prediction = Prediction(scenario, kernel)
    if not _applies(scenario, kernel):
        prediction.skipped = not_for(scenario, kernel.name)
        return prediction
    if scenario.external:
        if kernel.profile is None:
            prediction.skipped = (
                f"its module files are read for a profile; {kernel.name} is not set up"
            )
            return prediction
        scenario = _resolved(scenario, kernel.profile)
    try:
        prediction.records = predict(scenario, kernel.series)
    except ScenarioError as exc:
        prediction.refused = refusal(exc)
    return prediction


def _resolved(scenario: Scenario, profile: KernelProfile) -> Scenario:
    """A scenario with module files (`ko`) read for `profile`: their structure is the
    profile's build's (samples:NAME) and layout."""
    from harness.modules.external import resolve_scenario
    from harness.upstream.samples import sample_locator

    return resolve_scenario(scenario, profile, sample_locator(profile))[0]


def write(predictions: list[Prediction], as_json: bool, out: TextIO) -> None:
    if as_json:
        data = [
            {
                "scenario": p.scenario.name,
                "path": str(p.scenario.path),
                "profile": p.kernel.name,
                "series": p.kernel.series,
                "status": p.status,
                "reason": p.refused or p.skipped,
                "records": [{**r.to_json(), "number": r.index + 1} for r in p.records],
            }
            for p in predictions
        ]
        out.write(json.dumps(data, indent=2) + "\n")
        return
    for n, p in enumerate(predictions):
        head = f"== {p.scenario.name} ({p.scenario.path}) on {p.kernel.label}"
        if p.refused is not None:
            out.write(("\n" if n else "") + f"{head}: refused by the model: {p.refused}\n")
            continue
        if p.skipped is not None:
            out.write(("\n" if n else "") + f"{head}: skipped: {p.skipped}\n")
            continue
        out.write(("\n" if n else "") + f"{head}\n")
        out.write(f"   {p.scenario.description}\n")
        print_records(p.records, out)


def print_records(records: list[StepRecord], out: TextIO) -> None:
    """Each step, numbered from 1, with its log and what changed since the step
    before."""
    before = StepRecord(index=-1, step="")
    for record in records:
        result = (
            "ok"
            if not record.errno
            else (
                f"errno {record.errno} {errno.errorcode.get(record.errno, '?')} "
                f"({os.strerror(record.errno)})"
            )
        )
        out.write(f"\n[{record.index + 1}] {record.step}  -> {result}\n")
        if record.report:  # a known kernel bug: the kernel is hurt, the model stops
            out.write(f"    kernel report: {record.report} (the model follows no further)\n")
            continue
        for line in record.log:
            out.write(f"    | {line}\n")
        for label, old, new in (
            ("sysfs", before.sysfs, record.sysfs),
            ("module", before.modules, record.modules),
            ("impl", before.impls, record.impls),
            ("actor", before.actors, record.actors),
        ):
            for key in sorted(old.keys() | new.keys()):
                if old.get(key) != new.get(key):
                    value = new.get(key, "(gone)")
                    out.write(f"    {label} {key} = {value}\n")
        for key, value in record.ran.items():
            out.write(f"    ran {key} = {value}\n")
        if record.pending != before.pending:
            out.write(f"    pending: {record.pending or 'none (settled)'}\n")
        elif record.pending:
            out.write(f"    pending: {record.pending} (still blocked)\n")
        before = record
