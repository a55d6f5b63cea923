"""The HTML report of a run, made from its results directory (harness/report/html.py).

Fast tests read the recorded results under tests/data/results/ (`with-outcome`: the
artifacts after the issue, with outcome.json, func stacks and step timestamps;
`before-outcome`: what a run writes today) and check the pages' DOM.  The browser test
loads the pages in Chromium, as a reader of a CI artifact would, and keeps screenshots
at desktop and phone width.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from harness.errors import HarnessError
from harness.report import artifact_types
from harness.report.artifact_types import Layer, Record, ScenarioRun, StepTime
from harness.report.artifacts import read_run, read_scenario
from harness.report.html import index_html, render_index, render_run, render_scenario, scenario_html
from harness.report.step_state import sysfs_patches
from tests.report.conftest import NEW, OLD, Node, parse_html

Results = Callable[[str], Path]
Dom = Callable[[Path], Node]

SIX_ONE = "debian-6.1"
STACKS = "003_disable_middle_of_func_stack"
REPLACE = "004_replace_drops_function"
SIGNALS = "04_signals_after_15_retries"
SPINNER = "02_spinner_inside_blocks_until_forced"


def page(results: Path, profile: str, scenario: str) -> Path:
    return results / profile / scenario / "index.html"


def layers(node: Node) -> list[str]:
    """A func stack's layers as `patch` or `patch:nop`, bottom first."""
    return [
        n.attrs["data-patch"] + (":nop" if "nop" in n.classes else "")
        for n in node.find_all("li", "layer")
    ]


# ---- reading the artifacts ----------------------------------------------------------------


def test_compared_fields_are_the_records() -> None:
    """The reader names the compared fields itself (it may not import the runner's
    classes); they must stay those the runner compares."""
    for name in ("harness.outcome.record", "harness.record"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        assert module.COMPARED_FIELDS == artifact_types.COMPARED_FIELDS
        return
    pytest.fail("StepRecord's module (COMPARED_FIELDS) not found")


def test_reads_a_run_with_outcomes(results: Results) -> None:
    runs = {(r.profile, r.scenario): r for r in read_run(results(NEW))}
    status = {key: run.outcome.status for key, run in runs.items()}
    assert status == {
        (SIX_ONE, SPINNER): "pass",
        (SIX_ONE, STACKS): "pass",
        (SIX_ONE, REPLACE): "difference",
        (SIX_ONE, SIGNALS): "pass",
        ("debian-6.12", SPINNER): "skipped",
        ("debian-6.12", REPLACE): "pass",
        ("debian-6.12", SIGNALS): "host-failure",
        ("debian-7.3", STACKS): "refused",
    }
    replace = runs[SIX_ONE, REPLACE]
    assert replace.outcome.recorded and replace.outcome.first_difference == 4
    assert [r.number for r in replace.observed] == [1, 2, 3, 4]  # index + 1
    assert replace.outcome.command == (
        "klp-harness run --kernel debian-6.1 tests/scenarios/seeds/004_replace_drops_function.toml"
    )
    stacks = runs[SIX_ONE, STACKS].predicted[3].stacks
    assert stacks == {
        "seed_target:func1": (Layer("seed_stack_1"), Layer("seed_stack_2"), Layer("seed_stack_3")),
        "seed_target:func2": (Layer("seed_stack_1"), Layer("seed_stack_2")),
    }
    assert runs[SIX_ONE, SIGNALS].has_timeline and runs[SIX_ONE, SIGNALS].has_stacks
    assert "modules/Kbuild" in runs[SIX_ONE, SIGNALS].artifacts
    assert runs["debian-6.12", REPLACE].artifacts == (
        "outcome.json",
        "predicted.json",
        "observed.json",
    )
    assert not runs["debian-7.3", STACKS].predicted and not runs["debian-7.3", STACKS].problems


def test_reads_a_run_from_before_outcomes(results: Results) -> None:
    """No outcome.json: the status comes from report.txt and the records, the
    numbers from `index`; no times, command, stacks or timestamps."""
    runs = {r.scenario: r for r in read_run(results(OLD))}
    assert {name: run.outcome.status for name, run in runs.items()} == {
        REPLACE: "pass",
        SPINNER: "difference",
        SIGNALS: "host-failure",
    }
    spinner = runs[SPINNER].outcome
    assert spinner.first_difference == 4
    assert spinner.reason == "first difference at step 4 (force klp_patch): sysfs, pending, actors"
    reason = runs[SIGNALS].outcome.reason
    assert reason is not None and reason.startswith("guest crashed during step 3")
    for run in runs.values():
        assert not run.outcome.recorded and run.outcome.seconds is None
        assert run.outcome.command is None and not run.has_stacks and not run.has_timeline


def test_a_half_written_directory_is_incomplete_not_an_error(results: Results) -> None:
    """The run renders while it goes, so a reader may meet a file being written."""
    run = results(OLD)
    (run / SIX_ONE / REPLACE / "observed.json").write_text('[\n{"index": 0, "step": "lo')
    read = read_scenario(run / SIX_ONE / REPLACE)
    assert read.outcome.status == "incomplete"
    assert read.problems and read.problems[0].startswith("observed.json: not valid JSON")
    outcome = run / SIX_ONE / SPINNER / "outcome.json"
    outcome.write_text(json.dumps({"status": "exploded"}))
    read = read_scenario(run / SIX_ONE / SPINNER)
    assert read.outcome.status == "difference"  # derived, as without outcome.json
    assert read.problems == ("outcome.json.status: unknown status 'exploded'",)
    render_run(run)  # and the pages are still written


def test_sysfs_patches_in_stack_order() -> None:
    """`stack_order` (6.14 on) orders the patches; without it, the order sysfs lists."""
    sysfs = {
        "b/enabled": "1",
        "b/stack_order": "2",
        "b/klp_target/patched": "1",
        "a/enabled": "1",
        "a/stack_order": "1",
    }
    assert [p for p, _, _ in sysfs_patches(sysfs)] == ["a", "b"]
    assert sysfs_patches(sysfs)[1][2] == ["klp_target=1"]
    del sysfs["a/stack_order"]
    assert [p for p, _, _ in sysfs_patches(sysfs)] == ["b", "a"]


# ---- the pages ----------------------------------------------------------------------------


def test_matrix(results: Results, dom: Dom) -> None:
    index = dom(render_run(results(NEW)))
    matrix = index.find("table", id="matrix")
    cells = {
        (row.attrs["data-scenario"], i): cell
        for row in matrix.find_all("tr")
        if "data-scenario" in row.attrs
        for i, cell in enumerate(row.find_all("td"))
    }
    profiles = [th.text for th in matrix.find("thead").find_all("th")][1:]
    assert profiles == ["debian-6.1", "debian-6.12", "debian-7.3"]
    assert cells[REPLACE, 0].classes == {"cell", "difference"}
    assert cells[SIGNALS, 1].classes == {"cell", "host-failure"}
    assert cells[STACKS, 2].classes == {"cell", "refused"}
    assert cells[SPINNER, 1].classes == {"cell", "skipped"}
    assert cells[SPINNER, 2].classes == {"cell", "none"}  # not run on that profile
    first = cells[REPLACE, 0].find("a", "first-difference-link")
    assert first.attrs["href"] == f"{SIX_ONE}/{REPLACE}/index.html#step-4"
    assert "19.3 s" in cells[SIGNALS, 0].text


def test_difference_page(results: Results, dom: Dom) -> None:
    run = results(NEW)
    doc = dom(render_scenario(run, SIX_ONE, REPLACE))
    step = doc.find("tbody", id="step-4")
    assert {"first-difference", "differs"} <= step.classes
    assert doc.find_all("tbody", "first-difference") == [step]
    differs = [row.attrs["data-field"] for row in step.find_all("tr", "differs")]
    assert differs == ["impls"]
    observed = step.find("tr", data_field="impls").find("td", "observed")
    assert [s.text for s in observed.find_all("span", "only")] == [
        "seed_target:func1 = seed_patch_a"
    ]
    # func1 left the stack (B's nop is gone once the replace completed), yet A ran
    func1 = step.find("div", "funcstack", data_func="seed_target:func1")
    assert layers(func1) == [] and "predicted" in func1.find("li", "base").classes
    assert "seed_patch_a" in func1.find("p", "unexpected").text
    assert "not-run" in doc.find("tbody", id="step-5").classes
    assert doc.find("pre", "command").text.startswith("klp-harness run --kernel debian-6.1 ")
    assert doc.find("a", "jump").attrs["href"] == "#step-4"
    hrefs = {a.attrs["href"] for a in doc.find("section", id="artifacts").find_all("a")}
    assert {"report.txt", "predicted.json", "console.log", "modules/Kbuild"} <= hrefs


def test_func_stacks(results: Results, dom: Dom) -> None:
    doc = dom(render_scenario(results(NEW), SIX_ONE, STACKS))
    step4 = doc.find("tbody", id="step-4")
    func1 = step4.find("div", "funcstack", data_func="seed_target:func1")
    assert layers(func1) == ["seed_stack_1", "seed_stack_2", "seed_stack_3"]
    assert func1.find(cls="ran").attrs["data-patch"] == "seed_stack_3"
    sysfs = step4.find("div", "sysfs-state")
    assert [r.attrs["data-patch"] for r in sysfs.find_all("tr", "enabled")] == [
        "seed_stack_1",
        "seed_stack_2",
        "seed_stack_3",
    ]
    # disabling the middle patch: func2 falls back to the bottom one
    step7 = doc.find("tbody", id="step-7")
    func2 = step7.find("div", "funcstack", data_func="seed_target:func2")
    assert layers(func2) == ["seed_stack_1"]
    assert func2.find(cls="ran").attrs["data-patch"] == "seed_stack_1"


def test_nop_layers_and_the_original_that_runs(results: Results) -> None:
    """An atomic replace in transition: B's nop tops func1's stack, calls run the
    original."""
    run = read_scenario(results(NEW) / SIX_ONE / REPLACE)
    stacks = {"seed_target:func1": (Layer("seed_patch_a"), Layer("seed_patch_b", nop=True))}
    want = Record(4, "load seed_patch_b", impls={"seed_target:func1": "orig"}, stacks=stacks)
    got = Record(4, "load seed_patch_b", impls={"seed_target:func1": "orig"})
    doc = parse_html(scenario_html(_with(run, (want,), (got,))))
    func1 = doc.find("div", "funcstack", data_func="seed_target:func1")
    assert layers(func1) == ["seed_patch_a", "seed_patch_b:nop"]
    assert func1.find(cls="ran").attrs["data-patch"] == "orig"
    assert func1.find("li", "nop").attrs["data-patch"] == "seed_patch_b"


def _with(
    run: ScenarioRun, predicted: tuple[Record, ...], observed: tuple[Record, ...]
) -> ScenarioRun:
    outcome = replace(run.outcome, first_difference=None, status="pass", steps=())
    return replace(run, predicted=predicted, observed=observed, outcome=outcome)


def test_timeline(results: Results, dom: Dom) -> None:
    run = results(NEW)
    doc = dom(render_scenario(run, SIX_ONE, SIGNALS))
    timeline = doc.find("div", "timeline")
    transitions = timeline.find_all("g", "tl-transition")
    assert [(t.attrs["data-patch"], sorted(t.classes)) for t in transitions] == [
        ("klp_patch", ["patching", "reversed", "tl-transition"]),
        ("klp_patch", ["complete", "tl-transition", "unpatching"]),
    ]
    assert timeline.find("g", "tl-signal")
    retries = [g.find("text").text for g in timeline.find_all("g", "tl-retries")]
    assert retries == ["↻1", "↻16", "↻1"]
    assert len(timeline.find_all("g", "tl-due")) == 3  # steps 2-4 predict when it signals
    steps = timeline.find_all("a", "tl-step")
    assert [a.attrs["href"] for a in steps] == [f"#step-{n}" for n in range(1, 8)]
    spinner = dom(render_scenario(run, SIX_ONE, SPINNER)).find("div", "timeline")
    states = spinner.find_all("g", "tl-actor", data_actor="klp_target:spinner")
    assert [s.find("title").text.split(": ")[-1] for s in states][:4] == [
        "patch_state=-1 ran=none",
        "patch_state=0 ran=none",
        "patch_state=0 ran=none",
        "patch_state=-1 ran=none",
    ]
    difference = dom(render_scenario(run, SIX_ONE, REPLACE)).find("div", "timeline")
    assert difference.find("a", "first-difference").attrs["href"] == "#step-4"


def test_a_run_from_before_outcomes_says_what_it_lacks(results: Results, dom: Dom) -> None:
    run = results(OLD)
    render_run(run)
    doc = dom(page(run, SIX_ONE, SPINNER))
    assert doc.find("p", id="no-timeline") and doc.find("p", id="no-stacks")
    assert doc.find("p", id="derived") and not doc.find_all("div", "timeline")
    assert not doc.find_all("div", "funcstack")
    step = doc.find("tbody", id="step-4")
    assert "first-difference" in step.classes
    assert [r.attrs["data-field"] for r in step.find_all("tr", "differs")] == [
        "sysfs",
        "pending",
        "actors",
    ]
    cell = dom(run / "index.html").find("td", "host-failure")
    assert cell.find("span", "time").text == "—"


def test_hostile_text_is_escaped(results: Results, dom: Dom) -> None:
    """Kernel lines, step text, names and errors are untrusted: all of it is text."""
    run = results(NEW)
    directory = run / SIX_ONE / REPLACE
    hostile = '</pre></td><script>alert(1)</script><img src=x onerror="alert(2)">'
    observed = json.loads((directory / "observed.json").read_text())
    observed[3]["log"].append(hostile + "\x1b[31m\x00")
    observed[3]["step"] = predicted_step = 'load "><svg onload=alert(3)>'
    observed[3]["actors"] = {'a"b<c>': hostile}
    (directory / "observed.json").write_text(json.dumps(observed))
    predicted = json.loads((directory / "predicted.json").read_text())
    predicted[3]["stacks"] = {'x:"y"': [hostile, "p:nop"]}
    predicted[3]["step"] = predicted_step
    (directory / "predicted.json").write_text(json.dumps(predicted))
    outcome = json.loads((directory / "outcome.json").read_text())
    outcome["reason"] = hostile
    outcome["command"] = f"klp-harness run {hostile}"
    (directory / "outcome.json").write_text(json.dumps(outcome))
    render_run(run)
    for path in (page(run, SIX_ONE, REPLACE), run / "index.html"):
        doc = dom(path)
        tags = {node.tag for node in doc.iter()}
        assert not tags & {"script", "img", "iframe", "object", "embed"}
        handlers = [(n.tag, a) for n in doc.iter() for a in n.attrs if a.startswith("on")]
        assert handlers == []
        assert "<script>alert(1)</script>" in doc.text  # shown, as text
    text = page(run, SIX_ONE, REPLACE).read_text()
    assert "\x00" not in text and "\x1b" not in text and "\\x1b[31m\\x00" in text
    stack = dom(page(run, SIX_ONE, REPLACE)).find("div", "funcstack", data_func='x:"y"')
    assert layers(stack) == [hostile, "p:nop"]


def test_links_are_relative_and_lead_somewhere(results: Results, dom: Dom) -> None:
    """Usable from a downloaded CI artifact: no network, no absolute links, every
    link to a file that exists and every anchor to an element that does."""
    run = results(NEW)
    render_run(run)
    pages = sorted(run.rglob("index.html"))
    assert len(pages) == 9
    for path in pages:
        doc = dom(path)
        text = path.read_text()
        assert "http://" not in text and "https://" not in text
        for node in doc.iter():
            for name in ("href", "src"):
                if name not in node.attrs:
                    continue
                url = urlsplit(node.attrs[name])
                assert not url.scheme and not url.netloc and not url.path.startswith("/")
                target = (path.parent / unquote(url.path)).resolve() if url.path else path
                assert target.is_file(), f"{path}: {node.attrs[name]}"
                if url.fragment:
                    assert dom(target).find_all(id=url.fragment), f"{path}: {node.attrs[name]}"


def test_incremental(results: Results, dom: Dom) -> None:
    """A run renders one scenario's page and the matrix after each scenario."""
    run = results(NEW)
    spare = run.parent / "spare"
    shutil.move(run / SIX_ONE / REPLACE, spare)
    render_run(run)
    assert dom(run / "index.html").find_all("td", "difference") == []
    shutil.move(spare, run / SIX_ONE / REPLACE)
    before = page(run, SIX_ONE, STACKS).stat().st_mtime_ns
    render_scenario(run, SIX_ONE, REPLACE)
    render_index(run)
    assert page(run, SIX_ONE, REPLACE).is_file()
    assert page(run, SIX_ONE, STACKS).stat().st_mtime_ns == before
    assert dom(run / "index.html").find("td", "difference")


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="no such results directory"):
        render_run(tmp_path / "absent")
    with pytest.raises(HarnessError, match="not a profile or scenario"):
        render_scenario(tmp_path, "..", "x")
    assert "No scenario has finished yet" in index_html("empty", ())


# ---- in a browser -------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",  # root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium(profile: Path, *args: str) -> str:
    """Run headless Chromium; its stdout.  Missing Chromium fails the test: CI must
    have it (images/host-packages.sh), or the pages would never meet a browser."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the HTML report's browser test needs it "
            "(apt-get install --no-install-recommends chromium)"
        )
    result = subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_in_chromium(results: Results, tmp_path: Path) -> None:
    """Chromium's DOM of the pages, their width on a phone, and screenshots."""
    run = results(NEW)
    render_run(run)
    profile = tmp_path / "chromium"
    difference = page(run, SIX_ONE, REPLACE)
    doc = parse_html(chromium(profile, "--dump-dom", difference.as_uri()))
    assert "first-difference" in doc.find("tbody", id="step-4").classes
    assert doc.find("tr", "differs").attrs["data-field"] == "impls"
    doc = parse_html(chromium(profile, "--dump-dom", page(run, SIX_ONE, STACKS).as_uri()))
    func1 = doc.find("tbody", id="step-4").find("div", "funcstack", data_func="seed_target:func1")
    assert layers(func1) == ["seed_stack_1", "seed_stack_2", "seed_stack_3"]
    doc = parse_html(chromium(profile, "--dump-dom", page(run, SIX_ONE, SIGNALS).as_uri()))
    svg = doc.find("div", "timeline").find("svg")
    assert len(svg.find_all("g", "tl-transition")) == 2 and svg.find("g", "tl-signal")

    # on a phone the page itself never scrolls sideways: wide parts scroll in their box
    probe = run / "probe.html"
    probe.write_text(
        '<!DOCTYPE html><body><iframe style="border:0;width:390px;height:844px" '
        f'src="{SIX_ONE}/{REPLACE}/index.html" onload="document.body.dataset.width='
        'this.contentDocument.documentElement.scrollWidth"></iframe></body>'
    )
    doc = parse_html(
        chromium(profile, "--allow-file-access-from-files", "--dump-dom", probe.as_uri())
    )
    assert 0 < int(doc.find("body").attrs["data-width"]) <= 390

    shots = []
    for name, path in (("index", run / "index.html"), ("difference", difference)):
        for size in ("1280,800", "390,844"):
            shot = tmp_path / f"{name}-{size.replace(',', 'x')}.png"
            chromium(profile, f"--screenshot={shot}", f"--window-size={size}", path.as_uri())
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10000
            shots.append(shot)
    print("screenshots:", *shots, sep="\n  ")


def test_timeline_callbacks_and_reports(results: Results) -> None:
    """Callback lines and a kernel report get lanes of their own when a run has them."""
    run = read_scenario(results(NEW) / SIX_ONE / SIGNALS)
    log = (
        "% modprobe p",
        "livepatch: enabling patch 'p'",
        "p: pre_patch_callback: vmlinux",
        "livepatch: 'p': starting patching transition",
        "p: post_patch_callback: vmlinux",
        "livepatch: 'p': patching complete",
    )
    report = "warning at kernel/trace/ftrace.c:7660 arch_ftrace_ops_list_func"
    predicted = (Record(1, "load p", log=log), Record(2, "call vmlinux:f", report=report))
    observed = (Record(1, "load p", log=log), Record(2, "call vmlinux:f", report=report))
    steps = (
        StepTime(1, "load p", 100.0, 100.5, 10.0, 10.5),
        StepTime(2, "call vmlinux:f", 100.6, 100.7),
    )
    timed = replace(_with(run, predicted, observed), outcome=replace(run.outcome, steps=steps))
    timeline = parse_html(scenario_html(timed)).find("div", "timeline")
    callbacks = timeline.find_all("g", "tl-callback")
    assert [sorted(g.classes) for g in callbacks] == [
        ["pre", "tl-callback"],
        ["post", "tl-callback"],
    ]
    assert timeline.find("g", "tl-report").find("title").text == f"observed: {report}"
    transition = timeline.find("g", "tl-transition")
    assert transition.classes == {"tl-transition", "patching", "complete"}
    labels = [t.text for t in timeline.find_all("text", "lane-label")]
    assert labels == ["steps", "transition", "callbacks", "reports"]
