"""`[[processes]]` tables -> `Processes`: groups of user processes a scenario starts
and kills in the guest (`spawn` / `kill` steps).  Their names are words of a shell
command and of a file name in the guest, hence C identifiers; a group is small,
because every process shares the guest's one CPU with the runner."""

from __future__ import annotations

from typing import Any

from harness.errors import ScenarioError
from harness.scenario.checks import check_c_identifier
from harness.scenario.toml_fields import as_choice, as_int, check_keys, required
from harness.scenario.types import PROCESS_RUNS, Processes

PROCESSES_KEYS = {"name", "count", "run"}
MAX_PROCESSES = 8


def parse_processes(tables: list[dict[str, Any]]) -> tuple[Processes, ...]:
    groups: list[Processes] = []
    for i, table in enumerate(tables):
        where = f"processes[{i}]"
        check_keys(table, PROCESSES_KEYS, where)
        name = check_c_identifier(required(table, "name", where), f"{where}.name")
        count = as_int(table.get("count", 2), f"{where}.count")
        if not 1 <= count <= MAX_PROCESSES:
            raise ScenarioError(f"{where}.count", f"must be 1..{MAX_PROCESSES}, got {count}")
        run = as_choice(table.get("run", PROCESS_RUNS[0]), PROCESS_RUNS, f"{where}.run")
        if any(g.name == name for g in groups):
            raise ScenarioError(f"{where}.name", f"duplicate group {name!r}")
        groups.append(Processes(name, count, run))
    return tuple(groups)
