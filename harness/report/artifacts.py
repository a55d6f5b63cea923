"""A results directory read back into typed, frozen values, for reports made after the run.

A run writes `<results>/<profile>/<scenario>/` while it goes (harness/runner/manager.py
`write_artifacts`): `predicted.json` and `observed.json` (StepRecord JSON), `kernel.log`,
`console.log`, `qemu-cmdline.txt`, `modules/`, `report.txt` on a failure, and, from
newer runs on, `outcome.json` (status, timings, the command that reproduces it) and a
`stacks` map in each predicted record.  The HTML report is made from these files, not
from the runner's objects, so that it can be made again for any results directory (an
old one, a CI artifact downloaded elsewhere) and so that it depends on the artifacts'
format only, not on the classes that wrote them (harness/report/artifact_types.py).

Everything newer than the first format is optional: a run without `outcome.json` gets
its status from `report.txt` and from comparing the two JSON files, its step numbers
from `index + 1`, and no timings or func stacks (the report says so).  A directory
being written while it is read (the run renders as it goes), or one left half-written
by a killed run, gives a `ScenarioRun` whose `problems` say what could not be read,
never an exception: one bad scenario must not cost the report of the others.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import cast

from harness.errors import HarnessError
from harness.report.artifact_types import (
    NOP_SUFFIX,
    STATUSES,
    Layer,
    Outcome,
    Record,
    ScenarioRun,
    StepTime,
    differing_fields,
    first_difference,
)

# Raw artifacts a scenario directory may hold, in the order a reader wants them.
RAW_ARTIFACTS = (
    "report.txt",
    "outcome.json",
    "predicted.json",
    "observed.json",
    "kernel.log",
    "console.log",
    "qemu-cmdline.txt",
)
# Files that make a directory a scenario's (a refused or skipped one may hold only
# outcome.json).
_MARKERS = ("outcome.json", "predicted.json", "observed.json", "report.txt")


class ArtifactError(HarnessError):
    """An artifact exists but does not have the shape its writer gives it."""


# ---- reading ------------------------------------------------------------------------------


def _expect_map(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ArtifactError(f"{where}: expected an object, found {type(value).__name__}")
    return cast(dict[str, object], value)


def _str_map(value: object, where: str) -> dict[str, str]:
    mapping = _expect_map(value, where)
    for key, item in mapping.items():
        if not isinstance(item, str):
            raise ArtifactError(f"{where}.{key}: expected a string")
    return cast(dict[str, str], mapping)


def _int_map(value: object, where: str) -> dict[str, int]:
    mapping = _expect_map(value, where)
    for key, item in mapping.items():
        if not isinstance(item, int) or isinstance(item, bool):
            raise ArtifactError(f"{where}.{key}: expected an integer")
    return cast(dict[str, int], mapping)


def _int(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ArtifactError(f"{where}: expected an integer")
    return value


def _opt_int(value: object, where: str) -> int | None:
    return None if value is None else _int(value, where)


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ArtifactError(f"{where}: expected a string")
    return value


def _opt_str(value: object, where: str) -> str | None:
    return None if value is None else _str(value, where)


def _number(value: object, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ArtifactError(f"{where}: expected a number")
    return float(value)


def _opt_number(value: object, where: str) -> float | None:
    return None if value is None else _number(value, where)


def _str_list(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ArtifactError(f"{where}: expected a list of strings")
    return tuple(cast(list[str], value))


def parse_stacks(value: object, where: str) -> dict[str, tuple[Layer, ...]]:
    """`{"obj:func": ["patch_a", "patch_b:nop"]}` (bottom first) into layers."""
    stacks: dict[str, tuple[Layer, ...]] = {}
    for func, entries in _expect_map(value, where).items():
        layers = []
        for entry in _str_list(entries, f"{where}.{func}"):
            nop = entry.endswith(NOP_SUFFIX)
            layers.append(Layer(entry.removesuffix(NOP_SUFFIX) if nop else entry, nop))
        stacks[func] = tuple(layers)
    return stacks


def parse_record(data: object, where: str) -> Record:
    """One StepRecord JSON object; unknown keys are ignored (a newer run may add some)."""
    item = _expect_map(data, where)
    index = _int(item.get("index"), f"{where}.index")
    stacks = item.get("stacks")
    return Record(
        number=index + 1,
        step=_str(item.get("step", ""), f"{where}.step"),
        errno=_int(item.get("errno", 0), f"{where}.errno"),
        log=_str_list(item.get("log", []), f"{where}.log"),
        sysfs=_str_map(item.get("sysfs", {}), f"{where}.sysfs"),
        modules=_str_map(item.get("modules", {}), f"{where}.modules"),
        impls=_str_map(item.get("impls", {}), f"{where}.impls"),
        pending=_opt_str(item.get("pending"), f"{where}.pending"),
        ran=_str_map(item.get("ran", {}), f"{where}.ran"),
        actors=_str_map(item.get("actors", {}), f"{where}.actors"),
        due=_int_map(item.get("due", {}), f"{where}.due"),
        retries=_opt_int(item.get("retries"), f"{where}.retries"),
        report=_str(item.get("report", ""), f"{where}.report"),
        stacks=None if stacks is None else parse_stacks(stacks, f"{where}.stacks"),
    )


def parse_records(data: object, where: str) -> tuple[Record, ...]:
    if not isinstance(data, list):
        raise ArtifactError(f"{where}: expected a list of step records")
    return tuple(parse_record(item, f"{where}[{i}]") for i, item in enumerate(data))


def parse_outcome(data: object, where: str = "outcome.json") -> Outcome:
    """outcome.json (status, timings, the reproduce command); see the module's doc."""
    item = _expect_map(data, where)
    status = _str(item.get("status"), f"{where}.status")
    if status not in STATUSES[:-1]:
        raise ArtifactError(f"{where}.status: unknown status {status!r}")
    steps_data = item.get("steps", [])
    if not isinstance(steps_data, list):
        raise ArtifactError(f"{where}.steps: expected a list")
    steps = []
    for i, raw in enumerate(steps_data):
        step = _expect_map(raw, f"{where}.steps[{i}]")
        at = f"{where}.steps[{i}]"
        steps.append(
            StepTime(
                number=_int(step.get("number"), f"{at}.number"),
                step=_str(step.get("step", ""), f"{at}.step"),
                host_start=_number(step.get("host_start"), f"{at}.host_start"),
                host_end=_number(step.get("host_end"), f"{at}.host_end"),
                guest_start=_opt_number(step.get("guest_start"), f"{at}.guest_start"),
                guest_end=_opt_number(step.get("guest_end"), f"{at}.guest_end"),
            )
        )
    return Outcome(
        scenario=_str(item.get("scenario", ""), f"{where}.scenario"),
        profile=_str(item.get("profile", ""), f"{where}.profile"),
        status=status,
        reason=_opt_str(item.get("reason"), f"{where}.reason"),
        error=_opt_str(item.get("error"), f"{where}.error"),
        seconds=_opt_number(item.get("seconds"), f"{where}.seconds"),
        first_difference=_opt_int(item.get("first_difference"), f"{where}.first_difference"),
        command=_opt_str(item.get("command"), f"{where}.command"),
        steps=tuple(steps),
        recorded=True,
        kernel=_str_map(item.get("kernel", {}), f"{where}.kernel"),
        scenario_file=_opt_str(item.get("scenario_file"), f"{where}.scenario_file"),
    )


def _load_json(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ArtifactError(f"{path.name}: {exc.strerror or exc}") from exc
    try:
        data: object = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path.name}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    return data


def _raw_artifacts(directory: Path) -> tuple[str, ...]:
    present = [name for name in RAW_ARTIFACTS if (directory / name).is_file()]
    modules = directory / "modules"
    if modules.is_dir():
        present += sorted(
            path.relative_to(directory).as_posix() for path in modules.rglob("*") if path.is_file()
        )
    return tuple(present)


def _derived_outcome(
    scenario: str,
    profile: str,
    predicted: tuple[Record, ...],
    observed: tuple[Record, ...],
    report_text: str | None,
    problems: Sequence[str],
) -> Outcome:
    """The outcome of a run that wrote no outcome.json: the runner writes report.txt
    exactly when a scenario did not pass (first line: its error, or the steps before
    the first difference), so report.txt and the records say everything but times."""
    difference = first_difference(predicted, observed)
    first_line = (
        report_text.strip().splitlines()[0] if report_text and report_text.strip() else None
    )
    if difference is not None:
        want = next(r for r in predicted if r.number == difference)
        got = next(r for r in observed if r.number == difference)
        fields = ", ".join(differing_fields(want, got))
        reason = f"first difference at step {difference} ({got.step}): {fields}"
        return Outcome(scenario, profile, "difference", reason=reason, first_difference=difference)
    if report_text is not None:
        return Outcome(scenario, profile, "host-failure", reason=first_line, error=report_text)
    if problems:
        return Outcome(scenario, profile, "incomplete", reason=problems[0])
    if len(observed) < len(predicted):
        reason = f"{len(observed)} of {len(predicted)} steps observed, and no report.txt"
        return Outcome(scenario, profile, "incomplete", reason=reason)
    return Outcome(scenario, profile, "pass")


def read_scenario(directory: Path) -> ScenarioRun:
    """One scenario directory `<results>/<profile>/<scenario>`; never raises for what
    is in it (see `ScenarioRun.problems`), only when it is not a directory."""
    if not directory.is_dir():
        raise HarnessError(f"{directory}: no such scenario results directory")
    scenario, profile = directory.name, directory.parent.name
    problems: list[str] = []
    records: dict[str, tuple[Record, ...]] = {}
    for name in ("predicted", "observed"):
        path = directory / f"{name}.json"
        if not path.is_file():
            records[name] = ()
            continue
        try:
            records[name] = parse_records(_load_json(path), path.name)
        except ArtifactError as exc:
            problems.append(str(exc))
            records[name] = ()
    predicted, observed = records["predicted"], records["observed"]
    report_path = directory / "report.txt"
    report_text = None
    if report_path.is_file():
        try:
            report_text = report_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            problems.append(f"report.txt: {exc.strerror or exc}")
    outcome: Outcome | None = None
    outcome_path = directory / "outcome.json"
    if outcome_path.is_file():
        try:
            outcome = parse_outcome(_load_json(outcome_path))
        except ArtifactError as exc:
            problems.append(str(exc))
    if outcome is None:
        if not (directory / "predicted.json").is_file() and not problems:
            problems.append("predicted.json: missing")
        outcome = _derived_outcome(scenario, profile, predicted, observed, report_text, problems)
    elif outcome.status == "difference" and outcome.first_difference is None:
        outcome = replace(outcome, first_difference=first_difference(predicted, observed))
    return ScenarioRun(
        profile=profile,
        scenario=scenario,
        directory=directory,
        outcome=outcome,
        predicted=predicted,
        observed=observed,
        report_text=report_text,
        artifacts=_raw_artifacts(directory),
        problems=tuple(problems),
    )


def scenario_dirs(results: Path) -> list[Path]:
    """Every `<profile>/<scenario>` directory of a run's results, in report order."""
    found = []
    for profile in sorted(results.iterdir(), key=lambda p: natural_key(p.name)):
        if not profile.is_dir():
            continue
        for scenario in sorted(profile.iterdir(), key=lambda p: natural_key(p.name)):
            if scenario.is_dir() and any((scenario / name).is_file() for name in _MARKERS):
                found.append(scenario)
    return found


def read_run(results: Path) -> tuple[ScenarioRun, ...]:
    """Every scenario of a run's results directory `results/<time>`."""
    if not results.is_dir():
        raise HarnessError(f"{results}: no such results directory")
    return tuple(read_scenario(directory) for directory in scenario_dirs(results))


def read_outcomes(results: Path) -> tuple[ScenarioRun, ...]:
    """Every scenario of a run as the matrix needs it: its `outcome.json` alone where
    it has one (written last, so the folder is complete), the whole folder otherwise
    (an older run).  Cheap enough to call after every scenario of a long run."""
    if not results.is_dir():
        raise HarnessError(f"{results}: no such results directory")
    return tuple(_read_outcome(directory) for directory in scenario_dirs(results))


def _read_outcome(directory: Path) -> ScenarioRun:
    try:
        outcome = parse_outcome(_load_json(directory / "outcome.json"))
    except ArtifactError:
        return read_scenario(directory)
    return ScenarioRun(
        profile=directory.parent.name,
        scenario=directory.name,
        directory=directory,
        outcome=outcome,
        predicted=(),
        observed=(),
        report_text=None,
        artifacts=(),
        problems=(),
    )


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts debian-6.12 after debian-6.9 and step 10 after step 9."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part
    )
