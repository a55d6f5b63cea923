"""A fuzz run over several sides: kernel profiles (`--kernel all`), or with
`--model-only` the model of every profile's series and of the series between them (a
kernel tree of your own gets those rules, harness/model/profiles.py).  The budget is
spread over the sides: each gets an equal share of what is left when it starts, so
time a side leaves unused goes to the next.  By default the first difference ends the
run; with `keep_going` every side spends its share and the findings go to the corpus
(harness/fuzz/findings.py), known ones counted, new ones shrunk.

The run ends with a summary (`Campaign.lines`, also `summary.json` in the results
directory): per side and in all, histories, steps, the refusals by reason, the
findings, and for model-only runs the model variants the histories told apart.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.files import atomic_write
from harness.fuzz.config import WorkerConfig
from harness.fuzz.findings import Corpus
from harness.fuzz.prepare import palette_modules
from harness.fuzz.workers import Summary, run_workers
from harness.kernel.profiles import KernelProfile
from harness.model.profiles import PROFILES
from harness.model.variants import Variant

Echo = Callable[[str], None]
# Model-only runs also fuzz the rules of kernel trees between and after the profiles
# (`--kernel-dir`): 6.6 has 6.1's with v6.3's cleared klp relocations, 7.0 6.12's
# with v6.14's stack_order and lost kprobe arming errors.
TREE_SERIES = ("6.6", "7.0")
SUMMARY = "summary.json"
TOP_REASONS = 12


@dataclass(frozen=True)
class Side:
    """What judges one share of the run: a kernel profile's guests, or the model of
    a series standing in for them."""

    name: str
    series: str
    profile: KernelProfile | None = None


def model_sides(series: Sequence[str] | None = None) -> list[Side]:
    """The model-only sides: the given series, or every profile's and TREE_SERIES."""
    chosen = list(series) if series else [*PROFILES, *TREE_SERIES]
    return [Side(f"model-{s}", s) for s in chosen]


def kernel_sides(profiles: Sequence[KernelProfile]) -> list[Side]:
    return [Side(p.name, p.series, p) for p in profiles]


@dataclass
class Campaign:
    """What the run did, side by side."""

    summaries: list[Summary] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    results: Path = Path("results")
    variant: str | None = None  # the model variant judged, if any

    @property
    def found(self) -> list[dict[str, Any]]:
        return [f for s in self.summaries for f in s.found]

    @property
    def met_again(self) -> int:
        return sum(s.total("duplicates") for s in self.summaries)

    @property
    def host_failed(self) -> bool:
        return any(s.host_failed for s in self.summaries)

    @property
    def worker_errors(self) -> list[str]:
        return [*self.errors, *(f"[{s.side}] {e}" for s in self.summaries for e in s.errors)]

    def total(self, key: str) -> int:
        return sum(s.total(key) for s in self.summaries)

    def refused(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for summary in self.summaries:
            counts.update(summary.refused)
        return counts

    def lines(self) -> list[str]:
        """The summary a person (or a CI log) reads at the end."""
        lines = [f"[{s.side}] {s.line()}" for s in self.summaries]
        histories, steps = self.total("histories"), self.total("steps")
        seconds = sum(s.seconds for s in self.summaries) or 1e-9
        lines.append(
            f"in all: {histories} histories, {steps} steps in {seconds / 60:.1f} min "
            f"({60 * steps / seconds:.0f} steps/min), {self.total('steered')} steered around "
            f"a refusal, {self.total('refusals')} cut at one"
        )
        refused = self.refused()
        if refused:
            lines.append(f"refusals by reason ({sum(refused.values())}):")
            for reason, count in refused.most_common(TOP_REASONS):
                lines.append(f"  {count:6d}  {reason}")
            rest = sum(refused.values()) - sum(c for _, c in refused.most_common(TOP_REASONS))
            if rest:
                lines.append(f"  {rest:6d}  (other reasons)")
        corpus = Corpus(self.results)
        new = [f for f in self.found if f.get("new")]
        lines.append(
            f"findings: {len(new)} new, {len(self.found) - len(new)} known found again and "
            f"shrunk, {self.met_again} met again unshrunk; corpus {corpus.root} "
            f"({len(corpus.entries)} in all)"
        )
        for info in self.found:
            lines.append(
                f"  {'new ' if info.get('new') else 'seen'} {info['title']} [{info['side']}]: "
                f"{info['length']} steps, {info['folder']}"
            )
        told: dict[str, int] = {}
        shares: dict[str, list[int]] = {}
        for summary in self.summaries:
            for name, after in summary.told_apart.items():
                told[name] = min(after, told.get(name, after))
            for name, (checked, count) in summary.share_told().items():
                shares.setdefault(name, [0, 0])
                shares[name][0] += checked
                shares[name][1] += count
        judged_model = any(s.side.startswith("model-") for s in self.summaries)
        if told or (judged_model and not self.variant):
            lines.append(
                f"model variants told apart by the histories: {len(told)}/{len(Variant)} "
                "(first after N histories of a side; then the share of the histories checked "
                "that tell it apart)"
            )
            for variant in Variant:
                checked, count = shares.get(variant.value, [0, 0])
                share = f", {100 * count / checked:.1f}% of {checked}" if checked else ""
                first = told.get(variant.value)
                lines.append(
                    f"  {variant.value}: "
                    + (f"after {first}{share}" if first is not None else "not told apart")
                )
        for error in self.worker_errors:
            lines.append(f"error: {error}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "sides": [
                {
                    "side": s.side,
                    "seconds": round(s.seconds, 1),
                    **{k: s.total(k) for k in ("histories", "steps", "refusals", "steered")},
                    "differences": s.total("differences"),
                    "met_again": s.total("duplicates"),
                    "host_failures": s.total("host_failures"),
                    "refused": dict(s.refused),
                    "told_apart": s.told_apart,
                    "model_errors": s.model_errors,
                    "errors": s.errors,
                }
                for s in self.summaries
            ],
            "refused": dict(self.refused()),
            "found": [
                {k: v for k, v in f.items() if k not in ("scenario", "report")} for f in self.found
            ],
            "errors": self.worker_errors,
        }


def run_campaign(
    config: WorkerConfig,
    sides: Sequence[Side],
    jobs: int,
    echo: Echo,
    prepare: Callable[[KernelProfile, Echo], dict[str, Path]] = palette_modules,
) -> Campaign:
    """Run the workers on each side in turn, each with its share of the budget."""
    campaign = Campaign(results=config.out, variant=config.search.variant)
    left = config.search.seconds
    for position, side in enumerate(sides):
        share = left / (len(sides) - position)
        search = dataclasses.replace(config.search, seconds=share, series=side.series)
        side_config = dataclasses.replace(
            config, search=search, profile=side.profile, label=side.name
        )
        if side.profile is not None:
            try:
                side_config.modules = prepare(side.profile, echo)
            except HarnessError as exc:
                campaign.errors.append(f"[{side.name}] {exc}")
                echo(f"fuzz [{side.name}]: {exc}")
                continue
        echo(f"fuzz [{side.name}]: {share:.0f}s of the budget")
        summary = run_workers(side_config, jobs, echo)
        campaign.summaries.append(summary)
        echo(f"fuzz [{side.name}]: " + summary.line())
        left -= summary.seconds
        if summary.found and not config.search.keep_going:
            break  # the first difference ends the run
        if summary.host_failed:
            break
    atomic_write(config.out / SUMMARY, json.dumps(campaign.to_json(), indent=1) + "\n")
    return campaign
