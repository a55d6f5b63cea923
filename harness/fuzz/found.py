"""A found difference as text: a ready-to-run scenario (loadable by `klp-harness
run`) and the first-difference report, which the corpus keeps
(harness/fuzz/findings.py).

The scenario holds the shrunk history up to its first difference (a trace running
there untraced after it), what it names, and comments saying how it was found, what
differed and, for a model variant, whether the model itself agrees with the kernel
there (then the history refutes the variant; otherwise the model or the kernel is
wrong too).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from harness.fuzz.config import SearchConfig
from harness.fuzz.judge import MODEL_SIDE
from harness.fuzz.search import Found
from harness.model.variants import DESCRIPTIONS, parse_variant
from harness.report.text import failure_text
from harness.scenario.step_types import format_step
from harness.scenario.writer import scenario_toml


def found_name(found: Found, side: str, config: SearchConfig) -> str:
    return f"{config.variant or 'model'}-{side}-{found.prediction.history.digest}"


def _what(config: SearchConfig) -> str:
    variant = parse_variant(config.variant)
    if variant is None:
        return "the model"
    return f"the model variant {variant.value} ({DESCRIPTIONS[variant]})"


def _command(config: SearchConfig, side: str) -> str:
    words = ["klp-harness fuzz", f"--seed {config.seed}"]
    words.append("--model-only" if side == MODEL_SIDE else f"--kernel {side}")
    if config.variant:
        words.append(f"--model-variant {config.variant}")
    if config.uniform:
        words.append("--uniform")
    return " ".join(words)


@dataclass(frozen=True)
class FoundText:
    name: str  # <variant|model>-<side>-<digest>
    scenario: str  # the scenario file's text
    report: str  # the report's text
    length: int  # steps of the scenario (the closing untrace included)


def write_found(out: Path, found: Found, side: str, config: SearchConfig) -> tuple[Path, Path, int]:
    """Write the scenario and the report as `<name>.toml` and `<name>.report.txt`;
    returns their paths and its length in steps."""
    text = render_found(found, side, config)
    out.mkdir(parents=True, exist_ok=True)
    toml_path = out / f"{text.name}.toml"
    toml_path.write_text(text.scenario)
    report_path = out / f"{text.name}.report.txt"
    report_path.write_text(text.report)
    return toml_path, report_path, text.length


def render_found(found: Found, side: str, config: SearchConfig) -> FoundText:
    """The scenario and the report of a found difference."""
    outcome = found.verdict.outcome
    mismatch = outcome.mismatch
    history = found.verdict.shown_by(found.prediction.history)
    name = found_name(found, side, config)
    against = "the model's own prediction" if side == MODEL_SIDE else f"the kernel ({side})"
    if mismatch is not None:
        fields = ", ".join(mismatch.fields)
        summary = f"{against} differs from {_what(config)} at step {mismatch.index + 1} ({fields})"
    else:
        summary = f"{against} failed where {_what(config)} predicted success"
    header = [
        f"Found by `{_command(config, side)}` after {found.found_after} histories "
        f"({found.found_seconds:.0f} s),",
        f"shrunk by hypothesis in {found.shrink_runs} more runs ({found.shrink_seconds:.0f} s)"
        + ("" if found.shrunk else ", cut short by the shrink budget")
        + f": {len(history.steps)} step(s).",
        f"{summary[0].upper()}{summary[1:]}.",
    ]
    if config.variant and side != MODEL_SIDE:
        if found.verdict.model_agrees:
            header.append(
                "The model itself predicts every observed step: this history refutes the variant."
            )
        else:
            header.append("The model itself disagrees as well: a model or kernel difference.")
    comments = {}
    if mismatch is not None:
        comments[mismatch.index] = "first difference: " + ", ".join(mismatch.fields)
    scenario = dataclasses.replace(
        history.scenario(),
        path=Path(f"{name}.toml"),
        description=f"Fuzz history: {summary}.",
        kernels=() if side == MODEL_SIDE else (side,),
    )
    report = [*header, "", failure_text(outcome), "", "history:"]
    report += [f"  [{i + 1}] {format_step(step)}" for i, step in enumerate(history.steps)]
    return FoundText(
        name,
        scenario_toml(scenario, header, comments),
        "\n".join(report) + "\n",
        len(history.steps),
    )
