"""The model's mirror of the generated modules' klp_state memory (issue 17).

Each patch owns its `state->data`: pre_patch allocates, a take-over copies, post_unpatch
frees where upstream frees, module exit and a failed init free the rest.  The model
tracks those allocations, so a history in which a module would touch freed memory
fails here, without a VM, instead of being predicted as if nothing happened.  Also the
one refusal that protects the kernel from its own rules: unloading code a task that a
forced transition left behind still runs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.model.fuzz import FUZZ_SCENARIO, PATCHES, TARGETS
from harness.model.kernel.system import Kernel, ModuleMemoryError
from harness.model.predict import StepModel
from harness.scenario.loader import load_scenario
from harness.scenario.steps import parse_steps

FOUND = Path(__file__).parents[1] / "scenarios/found/001_state_shared_by_nonreplace_patches.toml"


def run(texts: list[str], strict: bool = True) -> StepModel:
    model = StepModel(FUZZ_SCENARIO, strict=strict)
    for i, step in enumerate(parse_steps(texts, TARGETS, PATCHES)):
        model.step(i, step)
    return model


def held(model: StepModel) -> dict[str, int]:
    """Live allocations per holder; must be exactly what loaded modules point at."""
    k = model.kernel
    pointed = {h for m in k.modules.values() if m.patch for h in m.patch.state_data.values() if h}
    assert pointed == set(k.heap), "an allocation is leaked, or a module points at freed memory"
    return dict(Counter(k.heap.values()))


def test_heap_model_catches_use_after_free_and_double_free() -> None:
    k = Kernel(FUZZ_SCENARIO, StepModel(FUZZ_SCENARIO).profile)
    a = k.kzalloc("p")
    k.kaccess(a, "p")
    k.kfree(a, "p")
    k.kfree(None, "p")  # kfree(NULL)
    with pytest.raises(ModuleMemoryError, match="dereferences freed allocation"):
        k.kaccess(a, "p")
    with pytest.raises(ModuleMemoryError, match="frees allocation #1 twice"):
        k.kfree(a, "p")
    with pytest.raises(ModuleMemoryError, match="dereferences NULL"):
        k.kaccess(None, "p")


def test_found_history_touches_only_live_memory_and_leaks_nothing() -> None:
    scenario = load_scenario(FOUND)
    model = StepModel(scenario)
    for i, step in enumerate(scenario.steps[:3]):  # load p_one, load p_three, disable p_one
        model.step(i, step)
    assert held(model) == {"p_three": 2}, "p_one freed its own, not p_three's"
    for i, step in enumerate(scenario.steps[3:], 3):
        model.step(i, step)
    assert held(model) == {}


def test_replaced_patch_keeps_its_allocation_until_its_module_goes() -> None:
    model = run(["load p_one", "load p_cum"])
    assert held(model) == {"p_one": 1, "p_cum": 1}  # p_one replaced: no callbacks
    run_more(model, ["unload p_one"])
    assert held(model) == {"p_cum": 1}


def test_kept_state_of_a_failed_enable_is_freed_by_init() -> None:
    """p_three's enable is cancelled (ftrace off) after pre_patch allocated: its
    post_unpatch keeps state 1 (p_cum holds one), frees state 7; init frees state 1."""
    model = run(["load p_cum", "sysctl ftrace_enabled=0", "load p_three"])
    assert "p_three: free_loglevel_state: keeping space to store console_loglevel" in (
        model.kernel.log
    )
    assert held(model) == {"p_cum": 1}


def test_keeping_space_keeps_it_until_exit() -> None:
    model = run(["load p_one", "load p_three", "disable p_three"])
    assert held(model) == {"p_one": 1, "p_three": 1}  # state 1 kept, state 7 freed
    run_more(model, ["unload p_three"])
    assert held(model) == {"p_one": 1}


FORCED_LEFTOVER = [
    "load t_alpha",
    "load p_one",
    "park t_alpha",  # sleeps in p_one's f1
    "load p_two --nowait",  # blocked: the task is in the code below p_two's f1
    "force p_two",  # completes; marks nothing forced (a non-replace enable)
    "load p_cum",  # checks only p_two's f1 (the top): completes, p_one unpinned
]


def test_unloading_code_a_forced_task_still_runs_is_refused() -> None:
    model = run(FORCED_LEFTOVER)
    assert model.kernel.modules["p_one"].refcnt == 0
    with pytest.raises(ScenarioError, match=r"steps\[6\]: `unload p_one` would free code"):
        run_more(model, ["unload p_one"], start=6)
    lax = run([*FORCED_LEFTOVER, "unload p_one"], strict=False)  # the kernel: an Oops
    assert "p_one" not in lax.kernel.modules
    released = run([*FORCED_LEFTOVER, "release t_alpha", "unload p_one"])
    assert "p_one" not in released.kernel.modules


def run_more(model: StepModel, texts: list[str], start: int = 0) -> None:
    for i, step in enumerate(parse_steps(texts, TARGETS, PATCHES), start):
        model.step(i, step)
