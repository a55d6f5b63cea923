"""`-j N`: N searches at once, each with its own seed, judge and guests, in processes
of their own (hypothesis runs one test at a time per process); their progress and
findings come back on a queue.  The first difference stops the others, and the
worker that found it shrinks it.

With coverage on, each worker measures `harness/model` from before it imports the
model (so module-level lines count as reached), and the parent combines the data.
This module imports nothing of the model at its top for that reason.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import coverage

from harness.fuzz.config import WorkerConfig
from harness.fuzz.found import found_name, write_found
from harness.fuzz.histories import Prediction, predict_history
from harness.fuzz.judge import KernelJudge, ModelJudge, Verdict
from harness.fuzz.search import Stats, search
from harness.model.variants import parse_variant
from harness.runner.manager import GuestManager

Message = tuple[str, int, dict[str, Any]]
Send = Callable[[Message], None]
COVERED_PACKAGE = "harness.model"
OMIT = ["*/harness/model/fuzz.py"]  # the property tests' module set, not the model


def worker_seed(seed: int, index: int) -> int:
    """Worker 0 uses the seed itself: `-j 1 --seed N` is reproducible on its own."""
    return seed + index * 1_000_003


def work(config: WorkerConfig, index: int, send: Send, stop: Callable[[], bool]) -> None:
    """One worker: search, and on a difference rerun its shrunk history with artifacts
    and write it out."""
    cov = None
    if config.coverage_file is not None:
        cov = coverage.Coverage(
            data_file=str(config.coverage_file),
            data_suffix=f"w{index}",
            branch=True,
            source_pkgs=[COVERED_PACKAGE],
            omit=OMIT,
        )
        cov.start()
    try:
        _search(config, index, send, stop)
    finally:
        if cov is not None:
            cov.stop()
            cov.save()


def _search(config: WorkerConfig, index: int, send: Send, stop: Callable[[], bool]) -> None:

    search_config = dataclasses.replace(config.search, seed=worker_seed(config.search.seed, index))
    judge: ModelJudge | KernelJudge
    if config.profile is None:
        judge = ModelJudge()
    else:
        manager = GuestManager(
            config.profile, log_dir=config.out / f"worker-{index}", fast_guest=config.fast_guest
        )
        judge = KernelJudge(manager, config.modules)
    stats = Stats()
    last = [0.0]

    def progress(prediction: Prediction, verdict: Verdict) -> None:
        if time.monotonic() - last[0] >= 1.0 or verdict.differs:
            last[0] = time.monotonic()
            send(("progress", index, _stats(stats)))

    try:
        found = search(search_config, judge, stats, stop, progress)
        if found is not None:
            toml_path, report_path, length = write_found(
                config.out, found, judge.side, search_config
            )
            info: dict[str, Any] = {
                "toml": str(toml_path),
                "report": str(report_path),
                "length": length,
                "found_after": found.found_after,
                "found_seconds": found.found_seconds,
                "shrink_runs": found.shrink_runs,
                "shrink_seconds": found.shrink_seconds,
                "model_agrees": found.verdict.model_agrees,
            }
            if isinstance(judge, KernelJudge):  # the evidence: a run with artifacts
                mismatch = found.verdict.outcome.mismatch
                history = found.prediction.history
                if mismatch is not None:
                    history = history.prefix(mismatch.index + 1)
                variant = parse_variant(search_config.variant)
                again = judge.judge(
                    predict_history(history, search_config.series, variant),
                    artifacts=config.out / found_name(found, judge.side, search_config),
                )
                info["reproduced"] = again.differs
            send(("found", index, info))
    finally:
        judge.close()
        send(("done", index, _stats(stats)))


def _stats(stats: Any) -> dict[str, Any]:
    return {
        "histories": stats.histories,
        "steps": stats.steps,
        "refusals": stats.refusals,
        "steered": stats.steered,
        "differences": stats.differences,
        "shrink_runs": stats.shrink_runs,
        "shrink_skipped": stats.shrink_skipped,
        "model_errors": list(stats.model_errors),
    }


def _process_main(config: WorkerConfig, index: int, messages: Any, stop_event: Any) -> None:
    try:
        work(config, index, messages.put, stop_event.is_set)
    except BaseException as exc:  # said to the parent, which reports it
        messages.put(("error", index, {"error": f"{type(exc).__name__}: {exc}"}))
        messages.put(("done", index, {}))


@dataclass
class Summary:
    """What the workers did, added up."""

    started: float = field(default_factory=time.monotonic)
    per_worker: dict[int, dict[str, Any]] = field(default_factory=dict)
    found: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def total(self, key: str) -> int:
        return sum(int(stats.get(key, 0)) for stats in self.per_worker.values())

    @property
    def model_errors(self) -> list[str]:
        return list(
            dict.fromkeys(e for s in self.per_worker.values() for e in s.get("model_errors", []))
        )

    def line(self) -> str:
        seconds = max(time.monotonic() - self.started, 1e-9)
        histories, steps, refusals = (self.total(k) for k in ("histories", "steps", "refusals"))
        rate = refusals / histories if histories else 0.0
        text = (
            f"{histories} histories, {steps} steps, {self.total('differences')} difference(s), "
            f"{refusals} cut at a refusal ({100 * rate:.1f}%), "
            f"{self.total('steered')} steered around one, "
            f"{histories / seconds:.2f} histories/s, {60 * steps / seconds:.0f} steps/min"
        )
        shrinks = self.total("shrink_runs")
        if shrinks:
            skipped = self.total("shrink_skipped")
            text += f" ({shrinks} while shrinking" + (
                f", {skipped} more without a guest)" if skipped else ")"
            )
        if self.model_errors:
            text += f", {len(self.model_errors)} model error(s)"
        return text


def run_workers(
    config: WorkerConfig, jobs: int, echo: Callable[[str], None], every: float = 10.0
) -> Summary:
    """Run `jobs` workers (in this process when one suffices) and echo a progress
    line at most every `every` seconds."""
    summary = Summary()
    last = [time.monotonic()]

    def handle(message: Message) -> None:
        kind, index, data = message
        if kind in ("progress", "done"):
            summary.per_worker[index] = data or summary.per_worker.get(index, {})
        elif kind == "found":
            summary.found.append(data)
        elif kind == "error":
            summary.errors.append(f"worker {index}: {data['error']}")
        if kind == "progress" and time.monotonic() - last[0] >= every:
            last[0] = time.monotonic()
            echo("fuzz: " + summary.line())

    if jobs == 1 and config.coverage_file is None:
        work(config, 0, handle, lambda: False)
        return summary
    ctx = multiprocessing.get_context("spawn")
    messages = ctx.Queue()
    stop_event = ctx.Event()
    processes = [
        ctx.Process(target=_process_main, args=(config, i, messages, stop_event), daemon=True)
        for i in range(jobs)
    ]
    for process in processes:
        process.start()
    done = 0
    try:
        while done < jobs:
            try:
                message = messages.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in processes):
                    break
                continue
            handle(message)
            if message[0] == "done":
                done += 1
            if message[0] == "progress" and summary.total("differences"):
                stop_event.set()  # one difference at a time: the others stop
    finally:
        stop_event.set()
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.terminate()
                process.join(5)
    return summary


def coverage_report(data_file: Path, out: Any) -> float:
    """Combine the workers' data and write the table of `harness/model`'s branches
    (with what was missed) to `out`; returns the total percentage."""

    cov = coverage.Coverage(
        data_file=str(data_file), branch=True, source_pkgs=[COVERED_PACKAGE], omit=OMIT
    )
    cov.combine([str(data_file.parent)], strict=True)
    cov.save()
    return float(cov.report(file=out, show_missing=True, skip_covered=False))
