"""Run many scenarios on one or more kernel profiles: the `klp-harness run` job.

Order matters for the user's time: everything that can fail without a VM (loading,
validating, predicting, building) happens for every scenario before the first guest
starts, so a typo never costs a boot.  Then `jobs` workers, each with guests of its
own, take scenarios from one queue; a worker reserves the scenario it will run next,
so its next guest (resumed, modules installed) is made while the current one runs.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.kernel.profiles import KernelProfile, cache_root
from harness.model import predict
from harness.modules.build import build_modules
from harness.modules.external import resolve_scenario
from harness.modules.signatures import check_bodies
from harness.outcome.record import StepRecord
from harness.outcome.scenario import ScenarioOutcome
from harness.report.text import failure_text, result_line
from harness.runner import waits
from harness.runner.capacity import cached_jobs
from harness.runner.manager import GuestManager, artifacts_lost, copy_sources
from harness.scenario.naming import artifact_ids, safe_component
from harness.scenario.types import Scenario
from harness.symbols.data import plain_module_file
from harness.symbols.validate import validate_symbols
from harness.upstream.samples import sample_locator

Echo = Callable[[str], None]


def stderr_echo(text: str) -> None:
    """One write per line: workers echo from threads of their own, and print()'s
    separate write of the newline let another thread's line in before it."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


@dataclass
class PreparedScenario:
    """A scenario ready for a guest: predicted and built for one profile."""

    scenario: Scenario
    profile: KernelProfile
    predicted: list[StepRecord]
    modules: dict[str, Path]
    sources: Path | None
    artifact_id: str = ""  # unique within the run, path-safe (harness.scenario.naming)


def applies_to(scenario: Scenario, profile: KernelProfile) -> bool:
    return not scenario.kernels or profile.name in scenario.kernels


@dataclass(frozen=True)
class Shard:
    """`K/N`: the K-th of N disjoint parts of a suite (1-based), for CI matrices."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise HarnessError(f"--shard {text!r}: expected K/N, e.g. 2/4") from None
        if not 1 <= index <= count:
            raise HarnessError(f"--shard {text}: K must be between 1 and N")
        return cls(index, count)

    def holds(self, key: str) -> bool:
        """Stable across runs and machines: by a hash of the key, not by position, so
        adding a scenario moves no other scenario to another shard."""
        digest = hashlib.sha256(key.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1


def shard_key(path: Path) -> str:
    """What a scenario is sharded by: its path from the nearest `scenarios` folder
    (`upstream/01_livepatch_basic.toml`), the same on every checkout and machine."""
    parts = path.parts
    if "scenarios" in parts:
        last = len(parts) - 1 - parts[::-1].index("scenarios")
        return "/".join(parts[last + 1 :])
    return path.name


def default_jobs() -> int:
    """Guests run at once when the user does not say: `KLP_HARNESS_JOBS`, else what
    `klp-harness setup` measured this machine sustains (harness.runner.capacity),
    else one per CPU (a TCG guest keeps a CPU busy while it computes)."""

    env = os.environ.get("KLP_HARNESS_JOBS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return cached_jobs() or max(1, len(os.sched_getaffinity(0)))


def prepare(
    scenarios: Sequence[Scenario], profile: KernelProfile, echo: Echo = stderr_echo
) -> list[PreparedScenario]:
    """Predict and build (cached) every scenario that applies to `profile`."""

    prepared = []
    selected = [s for s in scenarios if applies_to(s, profile)]
    ids = dict(zip((id(s) for s in scenarios), artifact_ids(scenarios), strict=True))
    echo(f"[{profile.name}] predicting and building modules for {len(selected)} scenario(s)")
    started = time.monotonic()
    for original in selected:
        scenario, files = resolve_scenario(
            original, profile, sample_locator(profile)
        )  # module files, if any
        if files:
            validate_symbols([scenario], [profile])  # the objects the files name
        predicted = predict(scenario, series=profile.series)
        built = build_modules([m for m in scenario.modules if not m.ko], profile)
        modules = {**built.modules, **files, **kernel_module_files(scenario, profile)}
        check_bodies(scenario, profile, modules)  # before any guest
        prepared.append(
            PreparedScenario(
                scenario, profile, predicted, modules, built.sources, ids[id(original)]
            )
        )
    echo(f"[{profile.name}] modules ready in {time.monotonic() - started:.1f}s")
    return prepared


def kernel_module_files(scenario: Scenario, profile: KernelProfile) -> dict[str, Path]:
    """The profile's own modules a scenario loads, uncompressed (cached)."""

    cache = cache_root() / "kernel-modules" / f"{profile.name}-{profile.release}"
    return {
        name: plain_module_file(profile.modules_dir, name, cache)
        for name in scenario.real_objects()
    }


class _Queue:
    """Scenarios left to run, shared by the workers; remembers the outcomes."""

    def __init__(
        self, items: Sequence[PreparedScenario], keep_going: bool, longest_first: bool = False
    ) -> None:
        self.items = list(items)
        self.keep_going = keep_going
        self.outcomes: dict[int, ScenarioOutcome] = {}
        self._order = list(range(len(self.items)))  # taken in this order
        if longest_first:
            self._order.sort(key=lambda i: -waits.expected_seconds(self.items[i].predicted))
        self._next = 0
        self._stop = False
        self.interrupted = False  # the run is being torn down: no more results
        self.lock = threading.Lock()

    def take(self) -> int | None:
        with self.lock:
            if self._stop or self._next >= len(self.items):
                return None
            self._next += 1
            return self._order[self._next - 1]

    def done(self, index: int, outcome: ScenarioOutcome) -> int:
        with self.lock:
            self.outcomes[index] = outcome
            if not outcome.passed and not self.keep_going:
                self._stop = True
            return len(self.outcomes)

    def stop(self) -> None:
        with self.lock:
            self._stop = True


def run_prepared(
    prepared: Sequence[PreparedScenario],
    results: Path,
    keep_going: bool = True,
    echo: Echo = stderr_echo,
    jobs: int = 1,
    snapshots: bool = True,
    fast_guest: bool = False,
) -> tuple[list[ScenarioOutcome], list[GuestManager]]:
    """Run on `jobs` workers; returns the outcomes in the given order and the
    (closed) managers, whose statistics the caller may print."""
    queue = _Queue(prepared, keep_going, longest_first=jobs > 1)
    managers = [
        GuestManager(item.profile, log_dir=results / safe_component(item.profile.name),
                     snapshots=snapshots, fast_guest=fast_guest)
        for item in prepared[: max(1, min(jobs, len(prepared)))]
    ]  # fmt: skip
    workers = [
        threading.Thread(target=_worker, args=(m, queue, results, echo, jobs > 1), daemon=True)
        for m in managers
    ]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            while worker.is_alive():
                worker.join(0.2)  # wakes for Ctrl-C
    except BaseException:
        queue.interrupted = True  # what the teardown cuts short is no scenario's result
        raise
    finally:
        queue.stop()
        for manager in managers:
            manager.close()
        for worker in workers:
            worker.join(5)
    return [queue.outcomes[i] for i in sorted(queue.outcomes)], managers


def _worker(
    manager: GuestManager, queue: _Queue, results: Path, echo: Echo, parallel: bool
) -> None:
    """Take scenarios until the queue is empty; the one after the current is taken
    ahead of time, so its guest can be made while the current one runs."""
    total = len(queue.items)
    index = queue.take()
    while index is not None:
        item = queue.items[index]
        following = queue.take()
        after = queue.items[following] if following is not None else None
        then = after.modules if after is not None else None
        artifacts = results / safe_component(item.profile.name) / item.artifact_id
        if not parallel:
            echo(f"[{item.profile.name}] ({index + 1}/{total}) {item.scenario.name}")

        def progress(step: int, text: str, count: int = len(item.predicted)) -> None:
            if not queue.interrupted:
                echo(f"    step {step + 1}/{count}: {text}")

        try:
            outcome = manager.run_scenario(
                item.scenario, item.predicted, item.modules, artifacts,
                None if parallel else progress, then,
                then_cpus=after.scenario.cpus if after is not None else 1,
            )  # fmt: skip
        except Exception as exc:  # a bug or an OSError writing artifacts: report it
            outcome = ScenarioOutcome(
                item.scenario.name, item.profile.name, item.predicted, error=str(exc)
            )
        if item.sources is not None:
            try:
                copy_sources(item.sources, artifacts)
            except OSError as exc:
                artifacts_lost(outcome, artifacts, exc)
        if queue.interrupted:
            return
        finished = queue.done(index, outcome)
        with queue.lock:
            prefix = f"[{finished}/{total}] " if parallel else ""
            echo(prefix + result_line(outcome))
            if not outcome.passed:
                echo(failure_text(outcome))
                echo(f"    artifacts: {artifacts}")
        index = following if (queue.keep_going or outcome.passed) else None


def run_suite(
    scenarios: Sequence[Scenario],
    profiles: Sequence[KernelProfile],
    results: Path,
    keep_going: bool = True,
    echo: Echo = stderr_echo,
    jobs: int = 1,
    snapshots: bool = True,
    fast_guest: bool = False,
) -> list[ScenarioOutcome]:
    prepared = {profile.name: prepare(scenarios, profile, echo) for profile in profiles}
    outcomes: list[ScenarioOutcome] = []
    for profile in profiles:
        items = prepared[profile.name]
        if not items:
            continue
        workers = min(jobs, len(items))
        echo(f"[{profile.name}] {len(items)} scenario(s) on {workers} guest(s) at a time "
             f"({profile.release})")  # fmt: skip
        started = time.monotonic()
        done, managers = run_prepared(items, results, keep_going, echo, jobs, snapshots, fast_guest)
        outcomes += done
        echo(f"[{profile.name}] {time.monotonic() - started:.1f}s wall; " + _guest_stats(managers))
        if outcomes and not keep_going and not all(o.passed for o in outcomes):
            break
    return outcomes


def _guest_stats(managers: Sequence[GuestManager]) -> str:
    boots = [s for m in managers for s in m.boot_seconds]
    restores = [s for m in managers for s in m.restore_seconds]
    resets = [s for m in managers for s in m.reset_seconds]
    parts = [f"{len(boots)} boot(s)" + (f" ({max(boots):.1f}s)" if boots else "")]
    if restores:
        parts.append(f"{len(restores)} resume(s), mean {sum(restores) / len(restores):.2f}s")
    if resets:
        parts.append(f"{len(resets)} reset(s), mean {sum(resets) / len(resets):.2f}s")
    # Faults repaired on the way (a guest made ahead lost, a damaged snapshot): say
    # so, or they go unnoticed but for the time they cost.
    notes = dict.fromkeys(note for m in managers for note in m.source.stats.notes)
    return "; ".join([", ".join(parts), *notes])


def results_dir(root: Path | None = None) -> Path:
    """results/<time>/ under the current directory (or `root`)."""
    base = root if root is not None else Path("results")
    return base / time.strftime("%Y%m%d-%H%M%S")
