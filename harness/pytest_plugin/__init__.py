"""pytest plugin: scenario files are test items, guests are session fixtures.

Every `*.toml` under a `scenarios/` directory becomes one item per kernel profile
(`upstream/basic.toml::debian-6.1`).  Each item runs on a guest of its own, resumed
from the profile's snapshot; the next item's guest is prepared while an item runs.
Python tests get guests through the `klp_guests` and `klp_guest` fixtures.  A failing
item shows the same report as `klp-harness run`.

Outcomes map to pytest's as exit codes do to `klp-harness run`'s: a difference from
the model (or a kernel crash) fails the item; a host or harness failure is an error
(the scenario runs in the item's setup, so pytest counts it among errors, not
failures); a scenario the model refuses on the profile, or not meant for it
(`kernels =`), is skipped with the reason.

With pytest-xdist (`-n auto`, the `parallel` extra) every worker has guests of its own
and all write artifacts under one results directory; without it, `-n` says how to get
it.  `--klp-shard K/N` keeps the K-th of N parts of the collected tests, for CI
matrices.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.kernel.profiles import DEFAULT_PROFILE, KernelProfile, load_profile, profile_names
from harness.outcome.scenario import ScenarioOutcome
from harness.runner.manager import GuestManager

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
    group.addoption(
        "--klp-fast-guest",
        action="store_true",
        help="guests without the kernel's memory checks (faster; corruption may go unseen)",
    )
    group.addoption(
        "--klp-shard",
        metavar="K/N",
        help="run only the K-th of N disjoint parts of the collected tests (CI matrices)",
    )
    if importlib.util.find_spec("xdist") is None:  # `-n auto` says how to get it
        # pytest reserves lowercase short options for itself; xdist registers its `-n`
        # through the same private call
        group._addoption(
            "-n",
            "--numprocesses",
            dest="klp_no_xdist",
            metavar="N",
            help="(needs pytest-xdist: pip install 'klp-harness[parallel]')",
        )


def selected_profile_names(config: pytest.Config) -> list[str]:
    names = config.getoption("--klp-kernel") or os.environ.get("KLP_HARNESS_PROFILES", "").split()
    return list(dict.fromkeys(names)) or profile_names()


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "klp_no_xdist", None) is not None:
        raise pytest.UsageError(
            "-n needs pytest-xdist, which is not installed: pip install 'klp-harness[parallel]'"
        )
    config.stash[_MANAGERS] = {}
    from harness.runner.suite import results_dir

    worker_input: dict[str, Any] | None = getattr(config, "workerinput", None)
    if worker_input is not None and "klp_results" in worker_input:
        config.stash[_RESULTS] = Path(worker_input["klp_results"])  # the controller's
    else:
        config.stash[_RESULTS] = results_dir(Path(str(config.rootpath)) / "results")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: every worker writes under the controller's results directory."""
    node.workerinput["klp_results"] = str(node.config.stash[_RESULTS])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    text = config.getoption("--klp-shard")
    if not text:
        return
    from harness.runner.suite import Shard

    try:
        shard = Shard.parse(text)
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None
    kept = [item for item in items if shard.holds(item.nodeid)]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Tell a scenario item which item follows, so its guest is made meanwhile."""
    if isinstance(item, ScenarioItem):
        item.following = nextitem if isinstance(nextitem, ScenarioItem) else None
    return (yield)


def pytest_unconfigure(config: pytest.Config) -> None:
    for manager in config.stash.get(_MANAGERS, {}).values():
        manager.close()


def guest_manager(config: pytest.Config, profile: KernelProfile) -> GuestManager:
    managers = config.stash[_MANAGERS]
    if profile.name not in managers:
        managers[profile.name] = GuestManager(
            profile,
            log_dir=config.stash[_RESULTS] / profile.name,
            fast_guest=bool(config.getoption("--klp-fast-guest")),
        )
    return managers[profile.name]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".toml" and "scenarios" in file_path.parts:
        collector: pytest.Collector = ScenarioFile.from_parent(parent, path=file_path)
        return collector
    return None


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from harness.modules.external import ModuleFiles
        from harness.scenario.loader import load_scenario

        try:
            scenario = load_scenario(self.path, ModuleFiles())
        except HarnessError as exc:
            yield InvalidScenarioItem.from_parent(self, name="load", message=str(exc))
            return
        from harness.runner.prepare import not_for

        for name in selected_profile_names(self.config):
            item = ScenarioItem.from_parent(self, name=name, scenario=scenario)
            if scenario.kernels and name not in scenario.kernels:
                item.add_marker(pytest.mark.skip(reason=not_for(scenario, name)))
            yield item


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
    """One scenario on one kernel profile, compared step by step with the model.  It
    runs in `setup`, so that a host failure is an error; `runtest` judges it."""

    def __init__(self, *, scenario: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.following: ScenarioItem | None = None
        self.outcome: ScenarioOutcome | None = None
        self.invalid: HarnessError | None = None  # bad input, found while preparing
        self.add_marker(pytest.mark.vm)

    def prepared(self) -> Any:
        from harness.runner.prepare import prepare
        from harness.symbols.validate import validate_symbols

        profile = load_profile(self.name)
        validate_symbols([self.scenario], [profile])  # real functions, before any build
        return prepare([self.scenario], profile, echo=lambda _text: None)[0]

    def setup(self) -> None:
        from harness.errors import UsageError
        from harness.report.text import failure_text, not_run_reason
        from harness.runner.suite import shard_key
        from harness.scenario.naming import safe_component

        try:
            item = self.prepared()
        except UsageError as exc:  # the scenario's fault: the test fails
            self.invalid = exc
            return
        except HarnessError as exc:  # the host's or the harness's: an error
            pytest.fail(f"klp-harness: {exc}", pytrace=False)
        if item.not_run is not None:
            pytest.skip(not_run_reason(item.not_run) or "not run")
        profile = item.profile
        then, then_cpus = None, 1
        if self.following is not None and self.following.name == self.name:
            try:
                following = self.following.prepared()
            except HarnessError:  # said when that item runs
                following = None
            if following is not None and following.not_run is None:
                then, then_cpus = following.modules, following.scenario.cpus
        manager = guest_manager(self.config, profile)
        artifact_id = safe_component(shard_key(self.path).removesuffix(".toml").replace("/", "-"))
        artifacts = self.config.stash[_RESULTS] / safe_component(profile.name) / artifact_id
        self.outcome = manager.run_scenario(
            item.scenario, item.predicted, item.modules, artifacts, then=then, then_cpus=then_cpus
        )
        self.user_properties.append(("artifacts", str(artifacts)))
        if self.outcome.status == "host-failure":
            pytest.fail(
                f"host failure (no verdict on the kernel): {failure_text(self.outcome)}",
                pytrace=False,
            )

    def runtest(self) -> None:
        if self.invalid is not None:
            raise self.invalid
        assert self.outcome is not None
        if not self.outcome.passed:
            raise ScenarioFailed(self.outcome)

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
