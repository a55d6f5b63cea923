"""A real run's report as a person sees it: `klp-harness run` on a guest with a
wrong model variant (no nops: a cumulative replace leaves the replaced patch's code
running), a scenario that passes, and one with an actor; the pages it wrote as it
went are opened in headless Chromium and their DOM checked.  Screenshots are kept
in results/report-screenshots/ (what CI uploads as the test's artifacts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from tests.report.conftest import parse_html
from tests.report.test_html import chromium, layers

pytestmark = pytest.mark.vm

SCENARIOS = Path(__file__).parents[1] / "scenarios"
REPLACE = SCENARIOS / "conformance" / "05_replace_over_replace.toml"
STACKS = SCENARIOS / "seeds" / "003_disable_middle_of_func_stack.toml"
SPINNER = SCENARIOS / "actors" / "01_spinner_between_calls_switches.toml"


def test_a_run_with_a_wrong_model_in_chromium(tmp_path: Path) -> None:
    results = tmp_path / "results"
    args = ["run", "--kernel", "debian-6.1", "--model-variant", "no-nops", "-j", "1",
            "--results", str(results), *map(str, (REPLACE, STACKS, SPINNER))]  # fmt: skip
    assert cli_main(args) == 1  # the variant is refuted
    [run] = list(results.iterdir())
    profile = tmp_path / "chromium"

    matrix = parse_html(chromium(profile, "--dump-dom", (run / "index.html").as_uri()))
    cells = {
        row.attrs["data-scenario"]: row.find("td", "cell").attrs["data-status"]
        for row in matrix.find("table", id="matrix").find_all("tr")
        if "data-scenario" in row.attrs
    }
    assert cells[REPLACE.stem] == "difference"
    assert cells[STACKS.stem] == "pass" and cells[SPINNER.stem] == "pass"

    replace_page = run / "debian-6.1" / REPLACE.stem / "index.html"
    verdict = json.loads((replace_page.parent / "outcome.json").read_text())
    doc = parse_html(chromium(profile, "--dump-dom", replace_page.as_uri()))
    first = doc.find("tbody", id=f"step-{verdict['first_difference']}")
    assert "first-difference" in first.classes
    # the replace is in its transition, or done: the func stack shows who is on it
    assert doc.find("div", "timeline").find("svg").find_all("g", "tl-transition")

    stacks_page = run / "debian-6.1" / STACKS.stem / "index.html"
    predicted = json.loads((stacks_page.parent / "predicted.json").read_text())
    number, stacks = next(
        (r["index"] + 1, r["stacks"]) for r in predicted if len(r["stacks"].get(FUNC1, [])) == 3
    )
    doc = parse_html(chromium(profile, "--dump-dom", stacks_page.as_uri()))
    func1 = doc.find("tbody", id=f"step-{number}").find("div", "funcstack", data_func=FUNC1)
    assert layers(func1) == stacks[FUNC1]

    spinner_page = run / "debian-6.1" / SPINNER.stem / "index.html"
    doc = parse_html(chromium(profile, "--dump-dom", spinner_page.as_uri()))
    assert doc.find("div", "timeline").find("svg").find_all("g", "tl-actor")

    shots, keep = [], Path("results") / "report-screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    for name, path in (("index", run / "index.html"), ("difference", replace_page)):
        for size in ("1280,800", "390,844"):
            shot = keep / f"{name}-{size.replace(',', 'x')}.png"
            chromium(profile, f"--screenshot={shot}", f"--window-size={size}", path.as_uri())
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            shots.append(shot)
    print("screenshots:", *shots, sep="\n  ")


FUNC1 = "seed_target:func1"
