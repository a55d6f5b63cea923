"""`-j N`: N searches at once, each with its own seed, judge and guests, in processes
of their own (hypothesis runs one test at a time per process); their progress and
findings come back on a queue.  By default the first difference stops the others,
and the worker that found it shrinks it; with `keep_going` each worker, once a
difference is shrunk, searches on with the next seed until the budget is spent,
leaving the findings it has met (by signature) unshrunk.

The parent keeps the corpus (harness/fuzz/findings.py): workers send what they found
and the signatures they met again, the parent merges them.  A worker writes only the
artifacts of its reruns, into the finding's corpus folder.

With coverage on, each worker measures `harness/model` from before it imports the
model (so module-level lines count as reached: harness/fuzz/process.py is the
process's entry), and the parent combines the data.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.fuzz.config import WorkerConfig
from harness.fuzz.findings import Corpus, Signature, signature_of
from harness.fuzz.found import render_found
from harness.fuzz.histories import Prediction, predict_history
from harness.fuzz.judge import MODEL_SIDE, KernelJudge, ModelJudge, Verdict
from harness.fuzz.process import measuring, process_main
from harness.fuzz.search import HostFailures, Memory, Stats, search
from harness.model.profiles import PROFILES, describe_choice
from harness.model.variants import Variant, parse_variant
from harness.runner.manager import GuestManager

Message = tuple[str, int, dict[str, Any]]
Send = Callable[[Message], None]
# searches of one worker: the next seed after each finding (keep_going)
SEED_STEP = 7919


def worker_seed(seed: int, index: int) -> int:
    """Worker 0 uses the seed itself: `-j 1 --seed N` is reproducible on its own."""
    return seed + index * 1_000_003


def work(config: WorkerConfig, index: int, send: Send, stop: Callable[[], bool]) -> None:
    """One worker: search; on a difference rerun its shrunk history with artifacts
    and send it; with keep_going, search on with the next seed."""
    seed = worker_seed(config.search.seed, index)
    judge: ModelJudge | KernelJudge
    if config.profile is None:
        series = config.search.series
        if series not in PROFILES and index == 0:  # a tree of one's own: its rules
            send(("note", index, {"text": describe_choice(series)}))
        judge = ModelJudge(series, tell_apart(config.search.tell_apart, config.search.variant))
    else:
        manager = GuestManager(
            config.profile, log_dir=config.out / f"worker-{index}", fast_guest=config.fast_guest
        )
        judge = KernelJudge(manager, config.modules)
    stats = Stats()
    known = set(config.known)
    memory = Memory()
    deadline = time.monotonic() + config.search.seconds
    last = [0.0]

    def progress(prediction: Prediction, verdict: Verdict) -> None:
        if time.monotonic() - last[0] >= 1.0 or verdict.differs:
            last[0] = time.monotonic()
            send(("progress", index, _stats(stats)))

    side = config.label or judge.side  # a profile, or model-<series>

    def duplicate(signature: Signature) -> None:
        send(("duplicate", index, {"id": signature.id, "side": side}))

    try:
        while not stop():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            search_config = dataclasses.replace(config.search, seed=seed, seconds=left)
            found = search(search_config, judge, stats, stop, progress, known, duplicate, memory)
            if found is None:
                break
            who = search_config.variant or "model"
            signature = signature_of(found.verdict.outcome, who)
            unshrunk = signature_of(found.first_verdict.outcome, who)
            known |= {signature.id, unshrunk.id}
            text = render_found(found, judge.side, search_config)
            info: dict[str, Any] = {
                "name": text.name,
                "scenario": text.scenario,
                "report": text.report,
                "length": text.length,
                "title": signature.title,
                "signature": dataclasses.asdict(signature),
                "unshrunk": dataclasses.asdict(unshrunk),
                "side": side,
                "seed": seed,
                "found_after": found.found_after,
                "found_seconds": found.found_seconds,
                "shrink_runs": found.shrink_runs,
                "shrink_seconds": found.shrink_seconds,
                "model_agrees": found.verdict.model_agrees,
            }
            if isinstance(judge, KernelJudge):  # the evidence: a run with artifacts
                history = found.verdict.shown_by(found.prediction.history)
                variant = parse_variant(search_config.variant)
                folder = Corpus(config.out).folder(signature)
                again = judge.judge(
                    predict_history(history, search_config.series, variant),
                    artifacts=folder / f"{judge.side}-{history.digest}",
                )
                info["reproduced"] = again.differs
                info["artifacts"] = str(folder / f"{judge.side}-{history.digest}")
            send(("found", index, info))
            if not config.search.keep_going:
                break
            seed += SEED_STEP
    except HostFailures as exc:
        send(("error", index, {"error": f"the host failed the guests: {exc}", "host": True}))
    finally:
        judge.close()
        send(("done", index, _stats(stats)))


def tell_apart(names: Sequence[str], variant: str | None) -> list[Variant]:
    """The variants a model-only run tells apart: none when it judges a variant."""
    if variant:
        return []
    wanted = [v.value for v in Variant] if "all" in names else list(names)
    return [v for v in map(parse_variant, wanted) if v is not None]


def _stats(stats: Stats) -> dict[str, Any]:
    return {
        "histories": stats.histories,
        "steps": stats.steps,
        "refusals": stats.refusals,
        "steered": stats.steered,
        "refused": dict(stats.refused),
        "differences": stats.differences,
        "duplicates": stats.duplicates,
        "host_failures": stats.host_failures,
        "shrink_runs": stats.shrink_runs,
        "shrink_skipped": stats.shrink_skipped,
        "model_errors": list(stats.model_errors),
        "told_apart": dict(stats.told_apart),
        "checked": dict(stats.checked),
        "told": dict(stats.told),
    }


@dataclass
class Summary:
    """What the workers of one side (a profile, or the model of one series) did, added
    up."""

    side: str = MODEL_SIDE
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    per_worker: dict[int, dict[str, Any]] = field(default_factory=dict)
    found: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    host_failed: bool = False  # an error was the host's (guests would not run)

    def total(self, key: str) -> int:
        return sum(int(stats.get(key, 0)) for stats in self.per_worker.values())

    @property
    def seconds(self) -> float:
        return max((self.ended or time.monotonic()) - self.started, 1e-9)

    @property
    def refused(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for stats in self.per_worker.values():
            counts.update(stats.get("refused", {}))
        return counts

    @property
    def told_apart(self) -> dict[str, int]:
        """Each variant some history told apart from the model, and after how many
        histories (the least over the workers)."""
        told: dict[str, int] = {}
        for stats in self.per_worker.values():
            for name, after in stats.get("told_apart", {}).items():
                told[name] = min(after, told.get(name, after))
        return told

    def share_told(self) -> dict[str, tuple[int, int]]:
        """Per variant: histories checked against it, and how many told it apart."""
        checked: Counter[str] = Counter()
        told: Counter[str] = Counter()
        for stats in self.per_worker.values():
            checked.update(stats.get("checked", {}))
            told.update(stats.get("told", {}))
        return {name: (count, told[name]) for name, count in checked.items()}

    @property
    def model_errors(self) -> list[str]:
        return list(
            dict.fromkeys(e for s in self.per_worker.values() for e in s.get("model_errors", []))
        )

    def line(self) -> str:
        histories, steps, refusals = (self.total(k) for k in ("histories", "steps", "refusals"))
        rate = refusals / histories if histories else 0.0
        text = (
            f"{histories} histories, {steps} steps, {self.total('differences')} difference(s), "
            f"{refusals} cut at a refusal ({100 * rate:.1f}%), "
            f"{self.total('steered')} steered around one, "
            f"{histories / self.seconds:.2f} histories/s, {60 * steps / self.seconds:.0f} steps/min"
        )
        shrinks = self.total("shrink_runs")
        if shrinks:
            skipped = self.total("shrink_skipped")
            text += f" ({shrinks} while shrinking" + (
                f", {skipped} more without a guest)" if skipped else ")"
            )
        if self.total("duplicates"):
            text += f", {self.total('duplicates')} known difference(s) met again"
        if self.total("host_failures"):
            text += f", {self.total('host_failures')} host failure(s)"
        if self.model_errors:
            text += f", {len(self.model_errors)} model error(s)"
        return text


def run_workers(
    config: WorkerConfig, jobs: int, echo: Callable[[str], None], every: float = 10.0
) -> Summary:
    """Run `jobs` workers (in this process when one suffices) and echo a progress
    line at most every `every` seconds.  Their findings are added to the corpus
    under `config.out` (harness/fuzz/findings.py) as they come."""
    side = config.label or (config.profile.name if config.profile is not None else MODEL_SIDE)
    summary = Summary(side)
    corpus = Corpus(config.out)
    last = [time.monotonic()]

    def handle(message: Message) -> None:
        kind, index, data = message
        if kind in ("progress", "done"):
            summary.per_worker[index] = data or summary.per_worker.get(index, {})
        elif kind == "found":
            signature = Signature(
                **{**data["signature"], "fields": tuple(data["signature"]["fields"])}
            )
            unshrunk = Signature(
                **{**data["unshrunk"], "fields": tuple(data["unshrunk"]["fields"])}
            )
            added = corpus.add(
                signature,
                data["side"],
                data["scenario"],
                data["report"],
                data["length"],
                data["seed"],
                unshrunk,
            )
            summary.found.append(
                {**data, "folder": str(added.folder), "new": added.new, "kept": added.kept}
            )
        elif kind == "note":
            echo(f"fuzz [{side}]: {data['text']}")
        elif kind == "duplicate":
            corpus.seen_again(data["id"], data["side"])
        elif kind == "error":
            summary.errors.append(f"worker {index}: {data['error']}")
            summary.host_failed |= bool(data.get("host"))
        if kind == "progress" and time.monotonic() - last[0] >= every:
            last[0] = time.monotonic()
            echo(f"fuzz [{side}]: " + summary.line())

    config = dataclasses.replace(config, known=tuple(corpus.known()))
    try:
        if jobs == 1 and config.coverage_file is None:
            work(config, 0, handle, lambda: False)
        else:
            _in_processes(config, jobs, handle, summary)
    finally:
        summary.ended = time.monotonic()
    return summary


def _in_processes(
    config: WorkerConfig, jobs: int, handle: Callable[[Message], None], summary: Summary
) -> None:
    ctx = multiprocessing.get_context("spawn")
    messages = ctx.Queue()
    stop_event = ctx.Event()
    processes = [
        ctx.Process(target=process_main, args=(config, i, messages, stop_event), daemon=True)
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
            if not config.search.keep_going and summary.total("differences"):
                stop_event.set()  # one difference at a time: the others stop
    finally:
        stop_event.set()
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.terminate()
                process.join(5)


def coverage_report(data_file: Path, out: Any) -> float:
    """Combine the workers' data and write the table of `harness/model`'s branches
    (with what was missed) to `out`; returns the total percentage."""
    cov = measuring(data_file)
    cov.combine([str(data_file.parent)], strict=True)
    cov.save()
    return float(cov.report(file=out, show_missing=True, skip_covered=False))
