"""pytest plugin: scenario files are test items, guests are session fixtures.

Every `*.toml` under a `scenarios/` directory becomes one item per kernel profile
(`upstream/basic.toml::debian-6.1`).  One guest per profile is booted on first use and
shared by all items (cleaned and verified between them).  Python tests get the same
guests through the `klp_guests` and `klp_guest` fixtures.  A failing item shows the
same report as `klp-harness run`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.kernels import DEFAULT_PROFILE, KernelProfile, load_profile, profile_names
from harness.runner.manager import GuestManager
from harness.runner.session import ScenarioOutcome

_MANAGERS = pytest.StashKey[dict[str, GuestManager]]()
_RESULTS = pytest.StashKey[Path]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("klp-harness")
    group.addoption(
        "--klp-kernel",
        action="append",
        metavar="PROFILE",
        help="kernel profile(s) scenario items run on (default: $KLP_HARNESS_PROFILES or all)",
    )


def selected_profile_names(config: pytest.Config) -> list[str]:
    names = config.getoption("--klp-kernel") or os.environ.get("KLP_HARNESS_PROFILES", "").split()
    return list(dict.fromkeys(names)) or profile_names()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_MANAGERS] = {}
    from harness.runner.suite import results_dir

    config.stash[_RESULTS] = results_dir(Path(str(config.rootpath)) / "results")


def pytest_unconfigure(config: pytest.Config) -> None:
    for manager in config.stash.get(_MANAGERS, {}).values():
        manager.close()


def guest_manager(config: pytest.Config, profile: KernelProfile) -> GuestManager:
    managers = config.stash[_MANAGERS]
    if profile.name not in managers:
        managers[profile.name] = GuestManager(
            profile, log_dir=config.stash[_RESULTS] / profile.name
        )
    return managers[profile.name]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".toml" and "scenarios" in file_path.parts:
        collector: pytest.Collector = ScenarioFile.from_parent(parent, path=file_path)
        return collector
    return None


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from harness.scenario.loader import load_scenario

        try:
            scenario = load_scenario(self.path)
        except HarnessError as exc:
            yield InvalidScenarioItem.from_parent(self, name="load", message=str(exc))
            return
        for name in selected_profile_names(self.config):
            if scenario.kernels and name not in scenario.kernels:
                continue
            yield ScenarioItem.from_parent(self, name=name, scenario=scenario)


class InvalidScenarioItem(pytest.Item):
    def __init__(self, *, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message

    def runtest(self) -> None:
        raise HarnessError(self.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        return self.message


class ScenarioFailed(Exception):
    def __init__(self, outcome: ScenarioOutcome) -> None:
        super().__init__(outcome.scenario)
        self.outcome = outcome


class ScenarioItem(pytest.Item):
    """One scenario on one kernel profile, compared step by step with the model."""

    def __init__(self, *, scenario: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.add_marker(pytest.mark.vm)

    def runtest(self) -> None:
        from harness.runner.suite import prepare

        profile = load_profile(self.name)
        item = prepare([self.scenario], profile, echo=lambda _text: None)[0]
        manager = guest_manager(self.config, profile)
        artifacts = self.config.stash[_RESULTS] / profile.name / self.scenario.name
        outcome = manager.run_scenario(item.scenario, item.predicted, item.modules, artifacts)
        self.user_properties.append(("artifacts", str(artifacts)))
        if not outcome.passed:
            raise ScenarioFailed(outcome)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from harness.report.text import failure_text

        if isinstance(excinfo.value, ScenarioFailed):
            return failure_text(excinfo.value.outcome)
        if isinstance(excinfo.value, HarnessError):
            return f"klp-harness: {excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.scenario.name} on {self.name}"


@pytest.fixture(scope="session")
def klp_guests(request: pytest.FixtureRequest) -> Any:
    """Factory: `klp_guests("debian-6.12")` -> the shared GuestManager of that profile."""

    def get(name: str = DEFAULT_PROFILE) -> GuestManager:
        return guest_manager(request.config, load_profile(name))

    return get


@pytest.fixture
def klp_guest(klp_guests: Any) -> Any:
    """A clean guest of the default profile (shared; cleaned before each test)."""
    manager: GuestManager = klp_guests()
    guest = manager.clean_guest()
    manager.mark_dirty()
    return guest
