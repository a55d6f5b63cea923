"""`[[bpf]]` tables -> `BpfProgram`s, and how `attach` / `detach` steps pair up,
checked when a scenario is loaded.  Whether the function exists and is ftrace-able on
a profile is checked with the profile's symbols (harness/symbols/validate.py): BPF
trampolines are ftrace direct calls, so they need its call site."""

from __future__ import annotations

from typing import Any

from harness.errors import ScenarioError
from harness.scenario.checks import check_c_identifier, check_symbol_name
from harness.scenario.step_types import Attach, Detach, Step
from harness.scenario.toml_fields import as_choice, check_keys, required
from harness.scenario.types import BPF_PROGS, BpfProgram

BPF_KEYS = {"name", "prog", "func"}


def parse_bpf(tables: list[dict[str, Any]]) -> tuple[BpfProgram, ...]:
    programs: list[BpfProgram] = []
    for i, table in enumerate(tables):
        where = f"bpf[{i}]"
        check_keys(table, BPF_KEYS, where)
        # the name is a file name in the guest's bpf file system (its pin)
        name = check_c_identifier(required(table, "name", where), f"{where}.name")
        prog = as_choice(required(table, "prog", where), BPF_PROGS, f"{where}.prog")
        func = check_symbol_name(required(table, "func", where), f"{where}.func")
        if any(p.name == name for p in programs):
            raise ScenarioError(f"{where}.name", f"duplicate program {name!r}")
        programs.append(BpfProgram(name, prog, func))
    return tuple(programs)


def check_attachments(steps: tuple[Step, ...]) -> None:
    """`attach` a detached program, `detach` an attached one: a pin is made once."""
    attached: set[str] = set()
    for i, step in enumerate(steps):
        if isinstance(step, Attach):
            if step.name in attached:
                raise ScenarioError(f"steps[{i}]", f"{step.name} is attached already")
            attached.add(step.name)
        elif isinstance(step, Detach):
            if step.name not in attached:
                raise ScenarioError(f"steps[{i}]", f"`detach {step.name}` before `attach`")
            attached.discard(step.name)
