"""Random step histories of the fuzz module set on a real guest, model vs kernel.

Issue 17: the model predicted every line of a history in which the generated modules
freed memory twice, and the scenario "passed" on a silently corrupted kernel.  This
runs random histories over `harness.model.fuzz` (blocked transitions, reverses, forces,
replaces, module hooks, klp_state hand-overs, shadow variables) on each selected profile:
each must match the model step by step, and the guest manager's health check must find
no taint flag that means a kernel bug (a BUG, Oops or WARN; with slub_debug a bad page).
A step the strict model refuses is dropped from the history, so every history is one a
scenario file could contain.

Bounded: KLP_FUZZ_SECONDS (default 60) is shared by the selected profiles; when a
profile's share is spent the remaining examples pass without running.  A failure
prints the history as scenario steps (copy them under tests/scenarios/found/).
Longer searches, with shrinking and coverage, are `make fuzz` (`klp-harness fuzz`).
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
from harness.kernel.profiles import load_profile
from harness.model import predict
from harness.model.fuzz import FUZZ_SCENARIO, FUZZ_STEPS
from harness.model.predict import StepModel
from harness.modules.build import build_modules
from harness.pytest_plugin import selected_profile_names
from harness.report.text import failure_text
from harness.runner.manager import GuestManager
from harness.scenario.step_types import Step, format_step

pytestmark = pytest.mark.vm

TOTAL_SECONDS = float(os.environ.get("KLP_FUZZ_SECONDS", "60"))
# candidate steps per history (refused ones are dropped); long histories reach the
# corners and amortise what comes between histories (a fresh guest, modules copied in)
MAX_STEPS = int(os.environ.get("KLP_FUZZ_STEPS", "25"))

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
    artifacts = tmp_path_factory.mktemp(f"fuzz-{profile_name}") / scenario.name
    modules = _modules[profile_name]  # the same for every history: the next guest is made meanwhile
    outcome = manager.run_scenario(scenario, predicted, modules, artifacts, then=modules)
    _ran[profile_name] = _ran.get(profile_name, 0) + 1
    print(  # shown with -s: what the budget bought
        f"[{profile_name}] history {_ran[profile_name]}: {len(steps)} steps in "
        f"{outcome.seconds:.1f}s, {'passed' if outcome.passed else 'FAILED'}"
    )
    history = "steps = [\n" + "".join(f'  "{format_step(step)}",\n' for step in steps) + "]"
    assert outcome.passed, f"{failure_text(outcome)}\nartifacts: {artifacts}\n{history}"
