"""Run many scenarios on one or more kernel profiles: the `klp-harness run` job.

Order matters for the user's time: everything that can fail without a VM (loading,
validating, predicting, building) happens for every scenario before the first guest
starts, so a typo never costs a boot.  Then `jobs` workers, each with guests of its
own, take scenarios from one queue; a worker reserves the scenario it will run next,
so its next guest (resumed, modules installed) is made while the current one runs.

Every scenario x profile ends as one outcome, in the order given: run (pass,
difference, host failure), refused by the model for the profile (the others run),
not meant for the profile (`kernels =`), or not run because an earlier one failed
with `exitfirst`.  Each is handed to the caller's `on_outcome` as it is known (in
completion order, from the thread that called: the one that owns the output), so
results are printed and streamed while the run goes on.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ExitCode, UsageError
from harness.kernel.profiles import KernelProfile
from harness.model.variants import Variant
from harness.outcome.scenario import ScenarioOutcome
from harness.report.text import failure_text, result_line
from harness.runner import waits
from harness.runner.capacity import cached_jobs
from harness.runner.manager import GuestManager, artifacts_lost, copy_sources, write_artifacts
from harness.runner.options import GuestOptions
from harness.runner.prepare import (
    Echo,
    PreparedScenario,
    prepare,
    stderr_echo,
)
from harness.scenario.naming import safe_component
from harness.scenario.types import Scenario

# A finished (or never started) scenario x profile and its artifacts folder (None:
# it never ran, so it has none).
OnOutcome = Callable[[ScenarioOutcome, Path | None], None]
EXITFIRST = "not run: an earlier scenario failed (--exitfirst)"


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
            raise UsageError(f"--shard {text!r}: expected K/N, e.g. 2/4") from None
        if not 1 <= index <= count:
            raise UsageError(f"--shard {text}: K must be between 1 and N")
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


def exit_code(outcomes: Sequence[ScenarioOutcome]) -> int:
    """A run's exit code: 3 if the host or the harness failed anywhere (that run says
    nothing of the kernel), else 1 if the kernel differed from the model, else 0;
    refused and skipped scenarios fail nothing."""
    statuses = {o.status for o in outcomes}
    if "host-failure" in statuses:
        return ExitCode.HOST_FAILURE
    if "difference" in statuses:
        return ExitCode.DIFFERENCE
    return ExitCode.OK


class ResultLines:
    """What a run prints as each scenario ends: its result line and, for one that
    failed, why and where its artifacts are (one write, so that no other line comes
    between); with `count`, a `[k/N]` prefix (parallel runs finish out of order)."""

    def __init__(self, echo: Echo = stderr_echo, total: int = 0, count: bool = False) -> None:
        self.echo = echo
        self.total = total
        self.count = count
        self.done = 0

    def __call__(self, outcome: ScenarioOutcome, artifacts: Path | None) -> None:
        self.done += 1
        prefix = f"[{self.done}/{self.total}] " if self.count else ""
        lines = [prefix + result_line(outcome)]
        if outcome.status in ("difference", "host-failure"):
            lines.append(failure_text(outcome))
            if artifacts is not None:
                lines.append(f"    artifacts: {artifacts}")
        self.echo("\n".join(lines))


class _Queue:
    """Scenarios left to run, shared by the workers; remembers the outcomes and
    hands each to the thread that reports it, in the order they finish."""

    def __init__(
        self, items: Sequence[PreparedScenario], exitfirst: bool, longest_first: bool = False
    ) -> None:
        self.items = list(items)
        self.exitfirst = exitfirst
        self.outcomes: dict[int, ScenarioOutcome] = {}
        self.finished: queue.SimpleQueue[tuple[int, Path | None]] = queue.SimpleQueue()
        self.reported: dict[int, threading.Event] = {}
        self._order = list(range(len(self.items)))  # taken in this order
        if longest_first:
            self._order.sort(key=lambda i: -waits.expected_seconds(self.items[i].predicted))
        self._next = 0
        self._stop = False
        self.failed = False  # a scenario failed (with exitfirst: the run stops)
        self.interrupted = False  # the run is being torn down: no more results
        self.lock = threading.Lock()

    def take(self) -> int | None:
        with self.lock:
            if self._stop or self._next >= len(self.items):
                return None
            self._next += 1
            return self._order[self._next - 1]

    def done(self, index: int, outcome: ScenarioOutcome, artifacts: Path | None) -> None:
        """Record an outcome and wait until it has been reported: the worker's next
        lines (the next scenario's progress) come after its result."""
        reported = threading.Event()
        with self.lock:
            self.outcomes[index] = outcome
            self.reported[index] = reported
            if outcome.status in ("difference", "host-failure"):
                self.failed = True
                if self.exitfirst:
                    self._stop = True
        self.finished.put((index, artifacts))
        while not reported.wait(0.2) and not self.interrupted:
            pass

    @property
    def stopped(self) -> bool:
        with self.lock:
            return self._stop

    def stop(self) -> None:
        with self.lock:
            self._stop = True


def run_prepared(
    prepared: Sequence[PreparedScenario],
    results: Path,
    exitfirst: bool = False,
    echo: Echo = stderr_echo,
    jobs: int = 1,
    snapshots: bool = True,
    fast_guest: bool = False,
    on_outcome: OnOutcome | None = None,
    options: GuestOptions | None = None,
    run_options: Sequence[str] = (),
) -> tuple[list[ScenarioOutcome], list[GuestManager]]:
    """Run on `jobs` workers; returns an outcome for every item, in the given order,
    and the (closed) managers, whose statistics the caller may print.  Each outcome
    goes to `on_outcome` (default: its result line on `echo`) as it is known: those
    that do not run first, then the others as they finish; with `exitfirst`, the
    first failure stops the run and the rest are reported as not run."""
    runnable = [item for item in prepared if item.not_run is None]
    parallel = jobs > 1 and len(runnable) > 1
    report = on_outcome or ResultLines(echo, len(prepared), count=parallel)
    for item in prepared:
        if item.not_run is not None:
            report(item.not_run, _keep_not_run(item, item.not_run, results))
    queue_ = _Queue(runnable, exitfirst, longest_first=jobs > 1)
    managers = [
        GuestManager(item.profile, log_dir=results / safe_component(item.profile.name),
                     snapshots=snapshots, fast_guest=fast_guest, options=options,
                     run_options=run_options, notify=echo)
        for item in runnable[: max(1, min(jobs, len(runnable)))]
    ] if runnable else []  # fmt: skip
    workers = [
        threading.Thread(target=_worker, args=(m, queue_, results, echo, jobs > 1), daemon=True)
        for m in managers
    ]
    try:
        for worker in workers:
            worker.start()
        while any(worker.is_alive() for worker in workers) or not queue_.finished.empty():
            try:
                index, artifacts = queue_.finished.get(timeout=0.2)  # wakes for Ctrl-C
            except queue.Empty:
                continue
            report(queue_.outcomes[index], artifacts)
            queue_.reported[index].set()
    except BaseException:
        queue_.interrupted = True  # what the teardown cuts short is no scenario's result
        raise
    finally:
        queue_.stop()
        for manager in managers:
            manager.close()
        for worker in workers:
            worker.join(5)
    outcomes: list[ScenarioOutcome] = []
    ran = iter(range(len(runnable)))
    for item in prepared:
        if item.not_run is not None:
            outcomes.append(item.not_run)
            continue
        index = next(ran)
        if index not in queue_.outcomes:  # an earlier failure stopped the run
            queue_.outcomes[index] = never_run(item, EXITFIRST)
            report(queue_.outcomes[index], _keep_not_run(item, queue_.outcomes[index], results))
        outcomes.append(queue_.outcomes[index])
    return outcomes, managers


def _keep_not_run(item: PreparedScenario, outcome: ScenarioOutcome, results: Path) -> Path | None:
    """A scenario that did not run has a folder too (its outcome.json and scenario
    file), so the report's matrix shows why (None: it could not be written)."""
    artifacts = results / safe_component(item.profile.name) / item.artifact_id
    try:
        write_artifacts(artifacts, outcome, None, 0, item.scenario, item.profile)
    except OSError:
        return None
    return artifacts


def never_run(item: PreparedScenario, reason: str) -> ScenarioOutcome:
    outcome = ScenarioOutcome(item.scenario.name, item.profile.name, item.predicted)
    outcome.skipped = reason
    return outcome


def _worker(
    manager: GuestManager, queue_: _Queue, results: Path, echo: Echo, parallel: bool
) -> None:
    """Take scenarios until the queue is empty; the one after the current is taken
    ahead of time, so its guest can be made while the current one runs."""
    total = len(queue_.items)
    index = queue_.take()
    while index is not None:
        item = queue_.items[index]
        following = queue_.take()
        after = queue_.items[following] if following is not None else None
        then = after.modules if after is not None else None
        artifacts = results / safe_component(item.profile.name) / item.artifact_id
        if not parallel:
            echo(f"[{item.profile.name}] ({index + 1}/{total}) {item.scenario.name}")

        def progress(step: int, text: str, count: int = len(item.predicted)) -> None:
            if not queue_.interrupted:
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
            outcome.host_failure = True
        if item.sources is not None:
            try:
                copy_sources(item.sources, artifacts)
            except OSError as exc:
                artifacts_lost(outcome, artifacts, exc)
        if queue_.interrupted:
            return
        queue_.done(index, outcome, artifacts)
        index = following if not queue_.stopped else None


def run_suite(
    scenarios: Sequence[Scenario],
    profiles: Sequence[KernelProfile],
    results: Path,
    exitfirst: bool = False,
    echo: Echo = stderr_echo,
    jobs: int = 1,
    snapshots: bool = True,
    fast_guest: bool = False,
    on_outcome: OnOutcome | None = None,
    options: GuestOptions | None = None,
    variant: Variant | None = None,
) -> list[ScenarioOutcome]:
    """Every scenario on every profile: an outcome for each, profile by profile in
    the order given (`len(scenarios) * len(profiles)` of them, known before the
    first guest starts), each handed to `on_outcome` as it is known."""
    prepared = {profile.name: prepare(scenarios, profile, echo, variant) for profile in profiles}
    run_options = rerun_options(options, variant, fast_guest)
    total = len(scenarios) * len(profiles)
    report = on_outcome or ResultLines(echo, total, count=jobs > 1)
    outcomes: list[ScenarioOutcome] = []
    for profile in profiles:
        items = prepared[profile.name]
        if exitfirst and any(o.status in ("difference", "host-failure") for o in outcomes):
            for item in items:
                outcome = item.not_run or never_run(item, EXITFIRST)
                report(outcome, None)
                outcomes.append(outcome)
            continue
        runnable = sum(1 for item in items if item.not_run is None)
        workers = min(jobs, runnable)
        if runnable:
            echo(f"[{profile.name}] {runnable} scenario(s) on {workers} guest(s) at a time "
                 f"({profile.release})")  # fmt: skip
        started = time.monotonic()
        done, managers = run_prepared(
            items, results, exitfirst, echo, jobs, snapshots, fast_guest, report, options,
            run_options,
        )  # fmt: skip
        outcomes += done
        if runnable:
            echo(f"[{profile.name}] {time.monotonic() - started:.1f}s wall; "
                 + _guest_stats(managers))  # fmt: skip
    return outcomes


def rerun_options(
    options: GuestOptions | None, variant: Variant | None, fast_guest: bool
) -> list[str]:
    """The command-line options beyond the kernel and the scenario that a run's
    outcomes need to be run again as they ran (`ScenarioOutcome.run_options`)."""
    return [
        *(options.argv() if options is not None else []),
        *(["--model-variant", str(variant)] if variant is not None else []),
        *(["--fast-guest"] if fast_guest else []),
    ]


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
