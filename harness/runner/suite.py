"""Run many scenarios on one or more kernel profiles: the `klp-harness run` job.

Order matters for the user's time: everything that can fail without a VM (loading,
validating, predicting, building) happens for every scenario before the first guest
boots, so a typo never costs a boot.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.kernels import KernelProfile
from harness.record import StepRecord
from harness.report.text import failure_text, result_line
from harness.runner.manager import GuestManager, copy_sources
from harness.runner.session import ScenarioOutcome
from harness.scenario.types import Scenario

Echo = Callable[[str], None]


def stderr_echo(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class PreparedScenario:
    """A scenario ready for a guest: predicted and built for one profile."""

    scenario: Scenario
    profile: KernelProfile
    predicted: list[StepRecord]
    modules: dict[str, Path]
    sources: Path | None


def applies_to(scenario: Scenario, profile: KernelProfile) -> bool:
    return not scenario.kernels or profile.name in scenario.kernels


def prepare(
    scenarios: Sequence[Scenario], profile: KernelProfile, echo: Echo = stderr_echo
) -> list[PreparedScenario]:
    """Predict and build (cached) every scenario that applies to `profile`."""
    from harness.model import predict
    from harness.modules.build import build_modules

    prepared = []
    selected = [s for s in scenarios if applies_to(s, profile)]
    echo(f"[{profile.name}] predicting and building modules for {len(selected)} scenario(s)")
    started = time.monotonic()
    for scenario in selected:
        predicted = predict(scenario, series=profile.series)
        built = build_modules(scenario, profile)
        prepared.append(
            PreparedScenario(scenario, profile, predicted, built.modules, built.sources)
        )
    echo(f"[{profile.name}] modules ready in {time.monotonic() - started:.1f}s")
    return prepared


def run_prepared(
    prepared: Sequence[PreparedScenario],
    manager: GuestManager,
    results: Path,
    keep_going: bool = True,
    echo: Echo = stderr_echo,
) -> list[ScenarioOutcome]:
    outcomes = []
    for number, item in enumerate(prepared, 1):
        name = item.scenario.name
        artifacts = results / item.profile.name / name
        echo(f"[{item.profile.name}] ({number}/{len(prepared)}) {name}")

        def progress(index: int, text: str, total: int = len(item.predicted)) -> None:
            echo(f"    step {index + 1}/{total}: {text}")

        outcome = manager.run_scenario(
            item.scenario, item.predicted, item.modules, artifacts, progress
        )
        if item.sources is not None:
            copy_sources(item.sources, artifacts)
        outcomes.append(outcome)
        echo(result_line(outcome))
        if not outcome.passed:
            echo(failure_text(outcome))
            echo(f"    artifacts: {artifacts}")
            if not keep_going:
                break
    return outcomes


def run_suite(
    scenarios: Sequence[Scenario],
    profiles: Sequence[KernelProfile],
    results: Path,
    keep_going: bool = True,
    echo: Echo = stderr_echo,
) -> list[ScenarioOutcome]:
    prepared = {profile.name: prepare(scenarios, profile, echo) for profile in profiles}
    outcomes: list[ScenarioOutcome] = []
    for profile in profiles:
        echo(f"[{profile.name}] booting guest ({profile.release})")
        with GuestManager(profile, log_dir=results / profile.name) as manager:
            outcomes += run_prepared(prepared[profile.name], manager, results, keep_going, echo)
            if manager.boot_seconds:
                echo(
                    f"[{profile.name}] {manager.boots} boot(s), "
                    f"first {manager.boot_seconds[0]:.1f}s; "
                    f"{len(manager.reset_seconds)} reset(s)"
                    + (
                        f", mean {sum(manager.reset_seconds) / len(manager.reset_seconds):.2f}s"
                        if manager.reset_seconds
                        else ""
                    )
                )
        if outcomes and not keep_going and not outcomes[-1].passed:
            break
    return outcomes


def results_dir(root: Path | None = None) -> Path:
    """results/<time>/ under the current directory (or `root`)."""
    base = root if root is not None else Path("results")
    return base / time.strftime("%Y%m%d-%H%M%S")
