"""Everything a scenario needs before a guest, for one profile: the model's
prediction (or its refusal), the modules built, the files a scenario names found.

This is the part of a run that can fail without a VM, so `klp-harness run` does it
for every scenario before the first guest starts: a typo never costs a boot.  A
scenario that will not run on the profile (refused by the model, or not meant for it
by its `kernels`) is prepared too, as the outcome that says why.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ScenarioError
from harness.kernel.profiles import KernelProfile, cache_root
from harness.model import predict
from harness.model.variants import Variant
from harness.modules import kbuild
from harness.modules.build import build_modules
from harness.modules.external import resolve_scenario
from harness.modules.kbuild import MakeRunner
from harness.modules.signatures import check_bodies
from harness.outcome.record import StepRecord
from harness.outcome.scenario import ScenarioOutcome
from harness.scenario.naming import artifact_ids
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
    """A scenario ready for a guest: predicted and built for one profile; or, with
    `not_run`, the outcome of one that will not run there (refused, not meant for
    the profile)."""

    scenario: Scenario
    profile: KernelProfile
    predicted: list[StepRecord]
    modules: dict[str, Path]
    sources: Path | None
    artifact_id: str = ""  # unique within the run, path-safe (harness.scenario.naming)
    not_run: ScenarioOutcome | None = None


def applies_to(scenario: Scenario, profile: KernelProfile) -> bool:
    return not scenario.kernels or profile.name in scenario.kernels


def not_for(scenario: Scenario, profile: str) -> str:
    """Why a scenario is skipped on a profile its `kernels` leaves out."""
    return f"not for {profile} (kernels = {', '.join(scenario.kernels)})"


def predict_for(
    scenario: Scenario, series: str, variant: Variant | None = None
) -> list[StepRecord]:
    """The model's prediction, or a model variant's (`run --model-variant`: a model
    the kernel should refute, to see how a wrong model is caught); a refusal is a
    ScenarioError of the model itself."""
    records = predict(scenario, series=series)
    if variant is None:
        return records
    return predict(scenario, series, variant)  # after the model: what it refuses is not run


def refusal(exc: ScenarioError) -> str:
    """The model's refusal as a reason: `step N: ...` (numbered from 1, as reports
    number steps) for a step's."""
    match = re.fullmatch(r"steps\[(\d+)\]", exc.where)
    if match:
        return f"step {int(match[1]) + 1}: {exc.message}"
    return f"{exc.where}: {exc.message}"


def progress_make(profile: KernelProfile, echo: Echo) -> MakeRunner:
    """make, saying what it compiles before and how long it took after: a build of
    many modules takes minutes on a small machine, and silence looks like a hang."""

    def make(argv: Sequence[str], cwd: Path) -> tuple[int, str]:
        names = sorted(path.stem for path in cwd.glob("*.c"))
        echo(f"[{profile.name}] compiling {len(names)} module(s): {', '.join(names)}")
        started = time.monotonic()
        status, log = kbuild.run_make(argv, cwd)
        verdict = "compiled" if status == 0 else "failed to compile"
        echo(f"[{profile.name}] {verdict} {len(names)} module(s) in "
             f"{time.monotonic() - started:.1f}s")  # fmt: skip
        return status, log

    return make


def prepare(
    scenarios: Sequence[Scenario],
    profile: KernelProfile,
    echo: Echo = stderr_echo,
    variant: Variant | None = None,
) -> list[PreparedScenario]:
    """Predict and build (cached) every scenario for `profile`, in order; one that
    does not apply to it, or that the model refuses on it, comes with its `not_run`
    outcome instead (nothing built)."""

    prepared = []
    ids = artifact_ids(scenarios)
    selected = [s for s in scenarios if applies_to(s, profile)]
    echo(f"[{profile.name}] predicting and building modules for {len(selected)} scenario(s)")
    started = time.monotonic()
    make = progress_make(profile, echo)
    refused = 0
    for original, artifact_id in zip(scenarios, ids, strict=True):
        if not applies_to(original, profile):
            outcome = ScenarioOutcome(original.name, profile.name, [])
            outcome.skipped = not_for(original, profile.name)
            prepared.append(_not_run(original, profile, artifact_id, outcome))
            continue
        scenario, files = resolve_scenario(
            original, profile, sample_locator(profile)
        )  # module files, if any
        if files:
            validate_symbols([scenario], [profile])  # the objects the files name
        try:
            predicted = predict_for(scenario, profile.series, variant)
        except ScenarioError as exc:  # the model refuses it on this kernel: said, not run
            outcome = ScenarioOutcome(original.name, profile.name, [])
            outcome.refused = refusal(exc)
            prepared.append(_not_run(original, profile, artifact_id, outcome))
            refused += 1
            continue
        built = build_modules([m for m in scenario.modules if not m.ko], profile, make=make)
        modules = {**built.modules, **files, **kernel_module_files(scenario, profile)}
        check_bodies(scenario, profile, modules)  # before any guest
        prepared.append(
            PreparedScenario(scenario, profile, predicted, modules, built.sources, artifact_id)
        )
    refusals = f" ({refused} refused by the model)" if refused else ""
    echo(f"[{profile.name}] modules ready in {time.monotonic() - started:.1f}s{refusals}")
    return prepared


def _not_run(
    scenario: Scenario, profile: KernelProfile, artifact_id: str, outcome: ScenarioOutcome
) -> PreparedScenario:
    return PreparedScenario(scenario, profile, [], {}, None, artifact_id, not_run=outcome)


def kernel_module_files(scenario: Scenario, profile: KernelProfile) -> dict[str, Path]:
    """The profile's own modules a scenario loads, uncompressed (cached)."""

    cache = cache_root() / "kernel-modules" / f"{profile.name}-{profile.release}"
    return {
        name: plain_module_file(profile.modules_dir, name, cache)
        for name in scenario.real_objects()
    }
