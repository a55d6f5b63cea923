"""What one fuzz worker needs, in plain data: it crosses a process boundary (-j N),
and a worker that measures coverage must unpickle it before the model is imported
(so this module imports nothing of the model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.kernel.profiles import KernelProfile

DEFAULT_MAX_STEPS = 12


@dataclass
class SearchConfig:
    seed: int = 0
    seconds: float = 600.0  # generating; a found difference then gets shrink_seconds
    shrink_seconds: float = 300.0
    max_steps: int = DEFAULT_MAX_STEPS
    series: str = "6.1"
    variant: str | None = None  # a harness.model.variants.Variant value
    uniform: bool = False  # steps drawn uniformly, not from the model's state
    keep_going: bool = False  # after a difference is shrunk, search on (next seed)
    # what worlds draw from: palette patch and scene names (None: the whole palette)
    palette: tuple[str, ...] | None = None
    # model-only: the variants (names, or "all") to tell apart from the model, each once
    tell_apart: tuple[str, ...] = ("all",)


@dataclass
class WorkerConfig:
    search: SearchConfig
    out: Path
    profile: KernelProfile | None = None  # None: --model-only
    modules: dict[str, Path] = field(default_factory=dict)  # the palette, built
    fast_guest: bool = False
    coverage_file: Path | None = None  # measure harness/model's branches into this
    label: str = ""  # the side it works for (a profile, or model-<series>)
    known: tuple[str, ...] = ()  # signature ids of the corpus's findings (not shrunk again)
