"""Shared by the model's tests: one way to predict a scenario written inline, and the
module sets several tests share, each named for what it is built to show.

A test names its file's module set by overriding the `modules` fixture; `predict_steps`
writes the scenario (its steps, then the set) and returns the model's records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from harness.model import predict
from harness.outcome.record import StepRecord
from harness.scenario.loader import load_scenario

# A target with two functions and a parked blocker, a second blocked target, and two
# non-cumulative patches: the consistency model's transitions and func stacks.
TWO_PATCHES_ON_BLOCKED_TARGETS = """[[target]]
name = "tgt"
funcs = ["f1", "f2"]
blocker = "f1"

[[target]]
name = "blk"
funcs = ["g"]
blocker = "g"

[[patch]]
name = "lp1"
[[patch.object]]
name = "vmlinux"
callbacks = "all"
[[patch.object]]
name = "tgt"
funcs = ["f1"]
callbacks = "all"

[[patch]]
name = "lp2"
[[patch.object]]
name = "tgt"
funcs = ["f1", "f2"]
callbacks = "all"
"""

# A patch of one function, then a cumulative replacement that patches another and a
# second target: nops, dynamic objects and reversal of atomic replace.
CUMULATIVE_REPLACE = """[[target]]
name = "tgt"
funcs = ["f1", "f2"]
blocker = "f1"

[[target]]
name = "blk"
funcs = ["g"]
blocker = "g"

[[patch]]
name = "lp1"
[[patch.object]]
name = "tgt"
funcs = ["f1"]
callbacks = "all"

[[patch]]
name = "cum"
replace = true
[[patch.object]]
name = "vmlinux"
callbacks = "all"
[[patch.object]]
name = "tgt"
funcs = ["f2"]
[[patch.object]]
name = "blk"
funcs = ["g"]
"""

# Patches with klp_states of different versions, a plain one and a cumulative plain
# one: system-state compatibility.
SYSTEM_STATES = """[[patch]]
name = "s_v1"
states = [{ id = 1, version = 1 }]
[[patch.object]]
name = "vmlinux"
callbacks = "all"

[[patch]]
name = "s_v2"
states = [{ id = 1, version = 2 }, { id = 9, version = 1 }]
[[patch.object]]
name = "vmlinux"
callbacks = "all"

[[patch]]
name = "plain"
[[patch.object]]
name = "vmlinux"
funcs = ["cmdline_proc_show"]

[[patch]]
name = "cum_plain"
replace = true
[[patch.object]]
name = "vmlinux"
funcs = ["meminfo_proc_show"]
"""

# One blocked target and one patch of it: a transition that stalls and retries.
ONE_BLOCKED_PATCH = """[[target]]
name = "tgt"
funcs = ["f1"]
blocker = "f1"

[[patch]]
name = "lp"
[[patch.object]]
name = "tgt"
funcs = ["f1"]
"""

Predict = Callable[..., list[StepRecord]]


def predict_text(
    directory: Path, steps: Sequence[str], modules: str, series: str = "6.1"
) -> list[StepRecord]:
    """The model's records for a scenario of `steps` over `modules` (TOML tables)."""
    quoted = ", ".join(f'"{step}"' for step in steps)
    path = directory / "t.toml"
    path.write_text(f'description = "t"\nsteps = [{quoted}]\n{modules}')
    return predict(load_scenario(path), series)


@pytest.fixture
def modules() -> str:
    """The module set of a test file (overridden per file)."""
    return TWO_PATCHES_ON_BLOCKED_TARGETS


@pytest.fixture
def predict_steps(tmp_path: Path, modules: str) -> Predict:
    """`predict_steps(*steps, modules=..., series=...)`: the records of those steps
    over the file's module set, or over `modules` when given."""

    def run(*steps: str, modules: str = modules, series: str = "6.1") -> list[StepRecord]:
        return predict_text(tmp_path, steps, modules, series)

    return run
