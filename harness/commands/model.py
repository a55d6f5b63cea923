"""`klp-harness model SCENARIO... [--json] [--kernel-series 6.1|6.12|7.3]`.

Prints what the reference model predicts for each step, without any guest: the log
lines, the errno, and whatever changed in sysfs, module refcounts, function
implementations and the pending transition.  Useful to write a scenario (see what it
will check before building anything) and to read a mismatch report.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from typing import TextIO

from harness.outcome.record import StepRecord
from harness.scenario.types import Scenario


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenarios",
        nargs="+",
        metavar="SCENARIO",
        help="scenario files or directories (searched for *.toml)",
    )
    parser.add_argument("--json", action="store_true", help="print the predicted records as JSON")
    parser.add_argument(
        "--kernel-series",
        default="6.1",
        metavar="SERIES",
        help="kernel series to model: 6.1 (default), 6.12, 7.3, or any X.Y from 6.1 on",
    )


def main(args: argparse.Namespace) -> int:
    from harness.model import predict
    from harness.model.profiles import profile_for
    from harness.modules.external import ModuleFiles
    from harness.scenario.loader import load_scenarios

    profile_for(args.kernel_series)  # unknown series: one line, exit 2
    scenarios = [
        _resolved(s, args.kernel_series) for s in load_scenarios(args.scenarios, ModuleFiles())
    ]
    predictions = [(scenario, predict(scenario, args.kernel_series)) for scenario in scenarios]
    try:
        write(predictions, args.kernel_series, args.json, sys.stdout)
    except BrokenPipeError:  # `klp-harness model ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _resolved(scenario: Scenario, series: str) -> Scenario:
    """A scenario with module files (`ko`) read for the Debian profile of `series`:
    their structure is the profile's build's (samples:NAME) and layout."""
    if not scenario.external:
        return scenario
    from harness.errors import UsageError
    from harness.kernel.profiles import load_profile, profile_names
    from harness.modules.external import resolve_scenario
    from harness.upstream.samples import sample_locator

    name = f"debian-{series}"
    if name not in profile_names():
        raise UsageError(f"{scenario.path}: its module files are read for a profile; no {name}")
    profile = load_profile(name)
    return resolve_scenario(scenario, profile, sample_locator(profile))[0]


def write(
    predictions: list[tuple[Scenario, list[StepRecord]]],
    series: str,
    as_json: bool,
    out: TextIO,
) -> None:
    if as_json:
        data = [
            {
                "scenario": scenario.name,
                "path": str(scenario.path),
                "series": series,
                "records": [record.to_json() for record in records],
            }
            for scenario, records in predictions
        ]
        out.write(json.dumps(data, indent=2) + "\n")
        return
    for n, (scenario, records) in enumerate(predictions):
        out.write(("\n" if n else "") + f"== {scenario.name} ({scenario.path}) on {series}\n")
        out.write(f"   {scenario.description}\n")
        print_records(records, out)


def print_records(records: list[StepRecord], out: TextIO) -> None:
    """Each step with its log and what changed since the step before."""
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
        out.write(f"\n[{record.index}] {record.step}  -> {result}\n")
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
