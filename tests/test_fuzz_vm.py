"""Random step histories of the fuzz module set on a real guest, model vs kernel.

Issue 17: the model predicted every line of a history in which the generated modules
freed memory twice, and the scenario "passed" on a silently corrupted kernel.  This
runs random histories over `harness.model.fuzz` (blocked transitions, reverses, forces,
replaces, module hooks, klp_state hand-overs, shadow variables) on each selected profile:
each must match the model step by step and raise no taint flag that means a kernel bug
(BUG, Oops, WARN, bad page, soft lockup).  A step the strict model refuses is dropped
from the history, so every history is one a scenario file could contain.

Bounded: KLP_FUZZ_SECONDS (default 120) is shared by the selected profiles; when a
profile's share is spent the remaining examples pass without running.  A failure
prints the history as scenario steps (copy them under tests/scenarios/found/).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from harness.errors import ScenarioError
from harness.kernels import load_profile
from harness.model import predict
from harness.model.fuzz import FUZZ_SCENARIO, FUZZ_STEPS
from harness.model.predict import StepModel
from harness.modules.build import build_modules
from harness.pytest_plugin import selected_profile_names
from harness.report.text import failure_text
from harness.runner.manager import GuestManager
from harness.scenario.steps import format_step
from harness.scenario.types import Step

pytestmark = pytest.mark.vm

TOTAL_SECONDS = float(os.environ.get("KLP_FUZZ_SECONDS", "120"))
# candidate steps per history (refused ones are dropped); long histories reach the
# corners and amortise the guest reset between histories (~2-3 s)
MAX_STEPS = int(os.environ.get("KLP_FUZZ_STEPS", "25"))
# /proc/sys/kernel/tainted bits a correct run never sets (include/linux/panic.h):
# B bad page (slub_debug reports), D died (Oops), W warning, L soft lockup.
BAD_TAINTS = {5: "B", 7: "D", 9: "W", 14: "L"}

_started: dict[str, float] = {}
_ran: dict[str, int] = {}
_modules: dict[str, dict[str, Path]] = {}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "profile_name" in metafunc.fixturenames:
        metafunc.parametrize("profile_name", selected_profile_names(metafunc.config))


def accepted(candidates: list[Step]) -> list[Step]:
    """The candidates the strict model accepts, in order.  A refused step is dropped and
    the model rebuilt without it (a refusal can come after the step changed it)."""
    kept: list[Step] = []
    model = StepModel(FUZZ_SCENARIO)
    for step in candidates:
        try:
            model.step(len(kept), step)
        except ScenarioError:
            model = StepModel(FUZZ_SCENARIO)
            for i, done in enumerate(kept):
                model.step(i, done)
            continue
        kept.append(step)
    return kept


def bad_taints(manager: GuestManager) -> int:
    value = int(manager.guest.run("cat /proc/sys/kernel/tainted", check=True).stdout)
    return value & sum(1 << bit for bit in BAD_TAINTS)


def taint_letters(mask: int) -> str:
    return "".join(letter for bit, letter in BAD_TAINTS.items() if mask & (1 << bit))


@settings(
    max_examples=int(os.environ.get("KLP_FUZZ_EXAMPLES", "1000")),
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # shrinking a VM run takes hours
    suppress_health_check=list(HealthCheck),
)
@given(
    candidates=st.lists(st.sampled_from(FUZZ_STEPS), min_size=MAX_STEPS // 2, max_size=MAX_STEPS)
)
def test_random_histories_match_the_model_and_keep_the_kernel_clean(
    klp_guests: Any,
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    profile_name: str,
    candidates: list[Step],
) -> None:
    budget = TOTAL_SECONDS / len(selected_profile_names(pytestconfig))
    started = _started.setdefault(profile_name, time.monotonic())
    if time.monotonic() - started > budget and _ran.get(profile_name):
        return
    steps = accepted(candidates)
    if not steps:
        return
    profile = load_profile(profile_name)
    if profile_name not in _modules:
        _modules[profile_name] = build_modules(FUZZ_SCENARIO, profile).modules
    digest = hashlib.sha256("\n".join(map(format_step, steps)).encode()).hexdigest()[:12]
    scenario = dataclasses.replace(
        FUZZ_SCENARIO, path=Path(f"fuzz-{digest}.toml"), steps=tuple(steps)
    )
    predicted = predict(scenario, profile.series)

    manager: GuestManager = klp_guests(profile_name)
    manager.clean_guest()
    before = bad_taints(manager)
    artifacts = tmp_path_factory.mktemp(f"fuzz-{profile_name}") / scenario.name
    outcome = manager.run_scenario(scenario, predicted, _modules[profile_name], artifacts)
    _ran[profile_name] = _ran.get(profile_name, 0) + 1
    print(  # shown with -s: what the budget bought
        f"[{profile_name}] history {_ran[profile_name]}: {len(steps)} steps in "
        f"{outcome.seconds:.1f}s, {'passed' if outcome.passed else 'FAILED'}"
    )
    history = "steps = [\n" + "".join(f'  "{format_step(step)}",\n' for step in steps) + "]"
    assert outcome.passed, f"{failure_text(outcome)}\nartifacts: {artifacts}\n{history}"
    raised = bad_taints(manager) & ~before
    assert not raised, f"taint {taint_letters(raised)} raised, see {artifacts}\n{history}"
