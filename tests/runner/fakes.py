"""Runs without guests or builds: the model predicts for real, a stand-in manager gives
each scenario the outcome a test plans (by the scenario's name), and modules are not
built.  What is tested is everything around the guests: which scenario x profile
runs, in what order outcomes are reported, what is skipped and refused, exit codes."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.kernel.profiles import KernelProfile
from harness.modules.build import BuildResult
from harness.outcome.compare import first_mismatch
from harness.outcome.record import StepRecord
from harness.outcome.scenario import ScenarioOutcome
from harness.runner import prepare, suite
from harness.scenario.types import Scenario


def fake_profile(name: str) -> KernelProfile:
    series = name.removeprefix("debian-")
    none = Path("/nonexistent")
    return KernelProfile(name, f"{series}.0-1-amd64", f"{series}.1", "v", none, none, none,
                         none, True)  # fmt: skip


PROFILES = {name: fake_profile(name) for name in ("debian-6.1", "debian-6.12", "debian-7.3")}

PASSING = """\
description = "A patch of a target's function, disabled and unloaded."
steps = ["load tgt", "load lp", "disable lp", "unload lp", "unload tgt"]

[[target]]
name = "tgt"
funcs = ["alpha"]

[[patch]]
name = "lp"
[[patch.object]]
name = "tgt"
funcs = ["alpha"]
"""
REFUSED = """\
description = "A load that would wait for ever: the model refuses it."
steps = ["load tgt block_transition=Y", "load lp"]

[[target]]
name = "tgt"
funcs = ["alpha"]
blocker = "alpha"

[[patch]]
name = "lp"
[[patch.object]]
name = "tgt"
funcs = ["alpha"]
"""
ONLY_612 = PASSING.replace("steps =", 'kernels = ["debian-6.12"]\nsteps =', 1)


def write_scenarios(directory: Path, **texts: str) -> list[Path]:
    """`name=text` as `<directory>/<name>.toml`, in the order given."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in texts.items():
        path = directory / f"{name}.toml"
        path.write_text(text)
        paths.append(path)
    return paths


@dataclasses.dataclass
class Plan:
    """What the stand-in manager does per scenario name: its status (`pass`,
    `difference`, `host-failure`; default pass) and a gate to wait for first."""

    statuses: dict[str, str] = dataclasses.field(default_factory=dict)
    gates: dict[str, threading.Event] = dataclasses.field(default_factory=dict)
    ran: list[str] = dataclasses.field(default_factory=list)
    options: list[Any] = dataclasses.field(default_factory=list)  # each manager's
    run_options: list[list[str]] = dataclasses.field(default_factory=list)  # each manager's

    def outcome(self, scenario: Scenario, profile: str, predicted: list[StepRecord]) -> Any:
        gate = self.gates.get(scenario.name)
        if gate is not None and not gate.wait(60):  # bounds a failing test only
            return ScenarioOutcome(scenario.name, profile, predicted, error="gate never opened")
        self.ran.append(scenario.name)
        status = self.statuses.get(scenario.name, "pass")
        outcome = ScenarioOutcome(scenario.name, profile, predicted, list(predicted))
        if status == "difference":
            wrong = dataclasses.replace(predicted[1], errno=16)
            outcome.observed = [predicted[0], wrong]
            outcome.mismatch = first_mismatch(predicted, outcome.observed)
        elif status == "host-failure":
            outcome.observed = predicted[:1]
            outcome.error = "QEMU exited (signal 9, SIGKILL)"
            outcome.host_failure = True
        outcome.seconds = 0.5
        return outcome


class FakeManager:
    plan = Plan()

    def __init__(self, profile: KernelProfile, **kwargs: Any) -> None:
        self.profile = profile
        self.run_options = list(kwargs.get("run_options", ()))
        self.plan.options.append(kwargs.get("options"))
        self.plan.run_options.append(self.run_options)
        self.boot_seconds: list[float] = []
        self.restore_seconds: list[float] = []
        self.reset_seconds: list[float] = []
        self.source = SimpleNamespace(stats=SimpleNamespace(notes=[]))

    def run_scenario(
        self, scenario: Scenario, predicted: list[StepRecord], *_args: Any, **_kwargs: Any
    ) -> ScenarioOutcome:
        outcome: ScenarioOutcome = self.plan.outcome(scenario, self.profile.name, predicted)
        outcome.run_options = list(self.run_options)
        return outcome

    def close(self) -> None:
        pass


def no_guests(monkeypatch: pytest.MonkeyPatch, plan: Plan | None = None) -> Plan:
    """Runs through the stand-in manager, modules not built, profiles the fakes."""
    plan = plan or Plan()
    monkeypatch.setattr(FakeManager, "plan", plan)
    monkeypatch.setattr(suite, "GuestManager", FakeManager)
    monkeypatch.setattr(prepare, "build_modules", lambda *_a, **_k: BuildResult())
    monkeypatch.setattr(prepare, "check_bodies", lambda *_a, **_k: None)
    from harness.commands import common

    monkeypatch.setattr(common, "ensure_profile", lambda name: PROFILES[name])
    return plan


def statuses(outcomes: Sequence[ScenarioOutcome]) -> list[tuple[str, str, str]]:
    return [(o.scenario, o.profile, o.status) for o in outcomes]
