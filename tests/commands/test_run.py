"""`klp-harness run`: bad scenarios rejected before any guest starts (one line, exit
2); what a run reports and exits with, guests stood in for."""

from __future__ import annotations

import io
import json
import re
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main as cli_main
from harness.guest import vm
from tests.scenario.test_loader import BAD, GOOD


@pytest.fixture
def no_guest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to start QEMU fails the test."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a guest was started for an invalid scenario")

    monkeypatch.setattr(vm.Guest, "__enter__", refuse)


CASES = [(what, GOOD.replace(old, new, 1)) for what, (old, new), _ in BAD]
CASES.append(("missing file", None))
CASES.append(("valid file next to a bad one", "BOTH"))


@pytest.mark.parametrize(("what", "text"), CASES, ids=[c[0] for c in CASES])
def test_bad_scenario_one_line_exit_2_no_guest(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_guest: None,
    what: str,
    text: str | None,
) -> None:
    bad = tmp_path / "bad.toml"
    args = ["run", str(bad)]
    if text == "BOTH":
        (tmp_path / "good.toml").write_text(GOOD)
        bad.write_text(GOOD.replace('"wait lp"', '"sleep lp"'))
        args = ["run", str(tmp_path / "good.toml"), str(bad)]
    elif text is not None:
        bad.write_text(text)
    assert cli_main([*args, "--results", str(tmp_path / "results")]) == 2, what
    err = capsys.readouterr().err
    assert err.startswith(f"klp-harness: error: {bad}: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "results").exists()


@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to build modules fails the test: outputs are checked first."""
    from harness.modules import build

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("modules were built before the outputs were checked")

    monkeypatch.setattr(build, "build_modules", refuse)


UNWRITABLE = [
    ("--results under a file", ["--results", "{tmp}/file/results"], "is not a directory"),
    ("--results is a file", ["--results", "{tmp}/file"], "exists and is not a directory"),
    ("--results under /proc", ["--results", "/proc/klp-results"], "cannot create files in /proc"),
    ("--junit is a directory", ["--junit", "{tmp}"], "is a directory"),
    ("--junit under /proc", ["--junit", "/proc/klp.xml"], "cannot create files in /proc"),
    ("--junit under a file", ["--junit", "{tmp}/file/r.xml"], "is not a directory"),
]


@pytest.mark.parametrize(
    ("what", "options", "expected"), UNWRITABLE, ids=[u[0] for u in UNWRITABLE]
)
def test_unwritable_output_one_line_exit_2_before_any_work(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_guest: None,
    no_build: None,
    what: str,
    options: list[str],
    expected: str,
) -> None:
    spec = tmp_path / "good.toml"
    spec.write_text(GOOD)
    (tmp_path / "file").write_text("")
    args = [o.format(tmp=tmp_path) for o in options]
    if "--results" not in args:
        args += ["--results", str(tmp_path / "results")]
    assert cli_main(["run", str(spec), *args]) == 2, what
    err = capsys.readouterr().err
    assert err.startswith("klp-harness: error: --"), err
    assert expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "results").exists()


# ---- what a run reports (guests stood in for: tests/runner/fakes.py) -----------------------


class Watched(io.StringIO):
    """stdout that opens `gate` once a line starting with `prefix` was written."""

    def __init__(self, prefix: str, gate: threading.Event) -> None:
        super().__init__()
        self.prefix = prefix
        self.gate = gate

    def write(self, text: str) -> int:
        written = super().write(text)
        if any(line.startswith(self.prefix) for line in self.getvalue().splitlines()):
            self.gate.set()
        return written


def test_ktap_streams_and_lists_every_scenario_on_every_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """KTAP's plan counts every scenario x profile, those that do not run are `# SKIP`
    with the reason, and the first result is on stdout before the last scenario ends
    (that one waits for it)."""
    from tests.runner.fakes import ONLY_612, PASSING, REFUSED, no_guests, write_scenarios

    plan = no_guests(monkeypatch)
    plan.statuses["differs"] = "difference"
    first_out = threading.Event()
    plan.gates["differs"] = first_out
    out = Watched("ok 1 ", first_out)
    monkeypatch.setattr(sys, "stdout", out)
    paths = write_scenarios(
        tmp_path / "s", passes=PASSING, refused=REFUSED, only612=ONLY_612, differs=PASSING
    )
    report = tmp_path / "out" / "results.json"
    args = ["run", "--ktap", "--json", str(report), "--kernel", "debian-6.1", "--kernel",
            "debian-6.12", "-j", "1", "--results", str(tmp_path / "results"),
            *map(str, paths)]  # fmt: skip
    assert cli_main(args) == 1
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["KTAP version 1", "1..8"]
    results = [line for line in lines if re.match(r"(not )?ok \d+ ", line)]
    assert [int(r.removeprefix("not ").split()[1]) for r in results] == list(range(1, 9))
    assert sum(" # SKIP " in line for line in results) == 3  # refused twice, only612 once
    assert any(re.fullmatch(r"ok \d+ only612@debian-6.1 # SKIP not for debian-6.1 \(kernels "
                            r"= debian-6.12\)", line) for line in results)  # fmt: skip
    assert any(re.match(r"ok \d+ refused@debian-6.12 # SKIP refused by the model: step 2: ",
                        line) for line in results)  # fmt: skip
    assert sum(line.startswith("not ok ") for line in results) == 2  # differs on both
    data = json.loads(report.read_text())["results"]
    assert [(d["scenario"], d["profile"], d["status"]) for d in data][:4] == [
        ("passes", "debian-6.1", "pass"),
        ("refused", "debian-6.1", "refused"),
        ("only612", "debian-6.1", "skipped"),
        ("differs", "debian-6.1", "difference"),
    ]
    differs = data[3]
    assert differs["first_difference"] == 2  # the second step, numbered from 1
    assert differs["reason"].startswith("first difference at step 2: load lp (errno)")
    assert differs["artifacts"].endswith("/debian-6.1/differs")
    assert data[1]["reason"].startswith("refused by the model")
    refused = json.loads((Path(data[1]["artifacts"]) / "outcome.json").read_text())
    assert refused["status"] == "refused"  # a folder of its own, for the report's matrix
    err = capsys.readouterr().err
    assert (
        "3/8 scenarios passed, 2 differed from the model, 2 refused by the model, 1 skipped" in err
    )


def test_a_host_failure_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.runner.fakes import PASSING, no_guests, write_scenarios

    plan = no_guests(monkeypatch)
    plan.statuses["lost"] = "host-failure"
    paths = write_scenarios(tmp_path / "s", lost=PASSING, fine=PASSING)
    assert cli_main(["run", "--results", str(tmp_path / "r"), *map(str, paths)]) == 3
    err = capsys.readouterr().err
    assert "ERROR lost [debian-6.1] 1/5 steps 0.5s (host failure)" in err
    assert "PASS  fine [debian-6.1]" in err  # the run went on


def test_exitfirst_stops_and_says_what_did_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.runner.fakes import PASSING, no_guests, write_scenarios

    plan = no_guests(monkeypatch)
    plan.statuses["first"] = "difference"
    paths = write_scenarios(tmp_path / "s", first=PASSING, second=PASSING)
    assert cli_main(["run", "-x", "--results", str(tmp_path / "r"), *map(str, paths)]) == 1
    err = capsys.readouterr().err
    assert "SKIP  second [debian-6.1] not run: an earlier scenario failed (--exitfirst)" in err
    assert plan.ran == ["first"]


def test_guest_options_reach_every_guest_and_the_rerun_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.runner.options import GuestOptions
    from tests.runner.fakes import PASSING, no_guests, write_scenarios

    plan = no_guests(monkeypatch)
    [path] = write_scenarios(tmp_path / "s", one=PASSING)
    args = ["run", "--append", "quiet loglevel=3", "--memory", "640", "--cpus", "2",
            "--results", str(tmp_path / "r"), str(path)]  # fmt: skip
    assert cli_main(args) == 0
    assert plan.options == [GuestOptions(("quiet", "loglevel=3"), 640, 2)]


@pytest.mark.parametrize("shard", ["5/4", "0/2", "x"])
def test_a_bad_shard_is_bad_input(shard: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["run", "--shard", shard, str(Path(__file__))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("klp-harness: error: --shard ") and shard in err and err.count("\n") == 1


# ---- on real guests -----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "tests/scenarios/seeds/004_replace_drops_function.toml"
SYSFS = ROOT / "tests/scenarios/upstream/19_sysfs.toml"


@pytest.mark.vm
def test_a_wrong_model_is_caught_reported_as_it_goes_and_reproduced(tmp_path: Path) -> None:
    """`--model-variant no-nops` predicts what seed 004 is about (a replace leaves the
    functions it drops patched): the kernel refutes it, exit 1.  The first scenario's
    result and steps come before the second scenario starts; its artifact folder
    reproduces it, variant included."""
    import subprocess

    report = tmp_path / "run.json"
    child = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "-j", "1", "--model-variant", "no-nops",
         "--ktap", "--show", "--json", str(report), "--results", str(tmp_path / "results"),
         str(SEED), str(SYSFS)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert child.returncode == 1, child.stderr
    lines = child.stderr.splitlines()
    failed = next(i for i, line in enumerate(lines) if line.startswith("FAIL  004_replace"))
    shown = lines.index("== 004_replace_drops_function on debian-6.1")
    second = next(i for i, line in enumerate(lines) if line.endswith("(2/2) 19_sysfs"))
    assert failed < shown < second, child.stderr
    assert any(line.startswith("PASS  19_sysfs [debian-6.1]") for line in lines[second:])
    ktap = child.stdout.splitlines()
    assert ktap[:2] == ["KTAP version 1", "1..2"]
    assert "not ok 1 004_replace_drops_function@debian-6.1" in ktap
    assert "ok 2 19_sysfs@debian-6.1" in ktap
    [seed, sysfs] = json.loads(report.read_text())["results"]
    assert (seed["status"], sysfs["status"]) == ("difference", "pass")
    assert seed["first_difference"] == int(seed["reason"].split()[4].rstrip(":"))
    assert seed["reason"].endswith("(impls)")
    folder = Path(seed["artifacts"])
    recorded = json.loads((folder / "outcome.json").read_text())
    assert "--model-variant no-nops" in recorded["command"]
    repro = subprocess.run(
        [sys.executable, "-m", "harness.cli", "repro", str(folder), "--results",
         str(tmp_path / "again"), "--command", "uname -r"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert repro.returncode == 0, repro.stderr
    assert "FAIL  004_replace_drops_function [debian-6.1]" in repro.stderr  # the variant again
    assert repro.stdout.strip() == recorded["kernel"]["release"]


@pytest.mark.vm
def test_guest_options_shape_the_guest_and_are_kept(tmp_path: Path) -> None:
    """`--append`, `--memory` reach QEMU's command line (booted: no snapshot of this
    kind is kept), and the artifacts' command gives them again."""
    args = ["run", "--no-snapshot", "--append", "klp_marker=7", "--memory", "640",
            "--results", str(tmp_path), str(SYSFS)]  # fmt: skip
    assert cli_main(args) == 0
    [folder] = tmp_path.glob("*/debian-6.1/19_sysfs")
    qemu = (folder / "qemu-cmdline.txt").read_text()
    assert " -m 640 " in qemu and " klp_marker=7" in qemu
    command = json.loads((folder / "outcome.json").read_text())["command"]
    assert "--append klp_marker=7 --memory 640" in command


@pytest.mark.vm
def test_a_guest_that_would_not_boot_exits_3(tmp_path: Path) -> None:
    """QEMU killed while the guest boots: the host failed, not the kernel."""
    from tests.faults.common import run_harness, scenario_copies

    [path] = scenario_copies(tmp_path, ["booting"])
    run = run_harness(tmp_path / "results", path, env={"KLP_FAULT_BOOT": "1"},
                      extra=["--no-snapshot"])  # fmt: skip
    assert run.returncode == 3, run.stderr
    assert "0/1 scenarios passed, 1 failed on the host" in run.stderr


def test_kcidb_lists_every_scenario_on_every_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --kcidb FILE`: KernelCI's format, valid by its own schema library, one test
    per scenario x profile (those that did not run as SKIP, a difference as FAIL)."""
    import kcidb_io

    from harness.runner.manager import write_artifacts
    from tests.runner.fakes import (
        ONLY_612,
        PASSING,
        REFUSED,
        FakeManager,
        no_guests,
        write_scenarios,
    )

    plan = no_guests(monkeypatch)
    plan.statuses["differs"] = "difference"
    plain = FakeManager.run_scenario

    def writing(
        self: FakeManager, scenario: Any, predicted: Any, modules: Any, artifacts: Path, *a: Any,
        **k: Any,
    ) -> Any:  # fmt: skip
        outcome = plain(self, scenario, predicted)
        write_artifacts(artifacts, outcome, None, 0, scenario, self.profile)
        return outcome

    monkeypatch.setattr(FakeManager, "run_scenario", writing)
    paths = write_scenarios(
        tmp_path / "s", passes=PASSING, refused=REFUSED, only612=ONLY_612, differs=PASSING
    )
    out = tmp_path / "kcidb.json"
    args = ["run", "--kcidb", str(out), "--kernel", "debian-6.1", "--kernel", "debian-6.12",
            "--results", str(tmp_path / "results"), *map(str, paths)]  # fmt: skip
    assert cli_main(args) == 1
    document = json.loads(out.read_text())
    kcidb_io.schema.LATEST.validate(document)
    found = {
        (t["path"].rsplit(".", 1)[1], t["build_id"].rsplit("-", 2)[-2]): t["status"]
        for t in document["tests"]
    }
    assert len(document["tests"]) == 8 and len(document["builds"]) == 2
    assert sorted(found.values()).count("SKIP") == 3  # refused twice, only612 once
    assert sorted(found.values()).count("FAIL") == 2  # differs on both kernels
