"""The harness itself stopped: Ctrl-C, SIGTERM and SIGKILL while it builds modules,
while its first guest starts, and during a step of its second scenario.

Ctrl-C and SIGTERM end it with one line and 130 / 143; SIGKILL gives it no chance
to say anything, so what matters there is that nothing outlives it: QEMU dies with
it (parent-death signal), make and the compilers too, and what it left on disk is
swept by the next run.  Either way the scenarios that finished keep their artifacts.
"""

from __future__ import annotations

import json
import secrets
import signal
from pathlib import Path

import pytest

from harness.kernel.profiles import cache_root
from harness.modules import cache as build_cache
from tests.faults.common import (
    PROFILE,
    UPSTREAM,
    Harness,
    Run,
    assert_nothing_left,
    interrupt_names,
    processes_mentioning,
    run_args,
    scenario_copies,
    wait_until,
)
from tests.guest.test_vm import qemu_pids

pytestmark = pytest.mark.vm
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]


def unbuilt_scenario(directory: Path) -> Path:
    """A scenario whose livepatch module no build has made yet (a fresh name)."""
    name = f"fault_build_{secrets.token_hex(4)}"
    path = directory / f"{name}.toml"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text((UPSTREAM / "01_livepatch_basic.toml").read_text().replace(
        "test_klp_livepatch", name))  # fmt: skip
    return path


def check_stopped(harness: Harness, signum: int) -> Run:
    """Exit code, the one line (none for SIGKILL), and nothing left running."""
    run = harness.finish(timeout=60)
    assert "Traceback" not in run.stderr, run.stderr
    if signum == signal.SIGKILL:
        assert run.returncode == -signal.SIGKILL
    else:
        code, line = interrupt_names(signum)
        assert (run.returncode, run.last_line()) == (code, line), run.stderr
        assert sum(ln.startswith("klp-harness: ") for ln in run.lines) == 1, run.stderr
    assert_nothing_left(run, killed=signum == signal.SIGKILL)
    return run


def cut_short_reported(run: Run) -> list[str]:
    """Scenarios reported as failed: the one the teardown cut short must not be."""
    return [name for name, outcome in run.outcomes().items() if outcome.status != "PASS"]


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_stopped_while_building(tmp_path: Path, signum: int) -> None:
    harness = Harness(run_args(tmp_path / "results", unbuilt_scenario(tmp_path)),
                      tmp_path / "results")  # fmt: skip
    marker = f"build-{harness.proc.pid}-"
    wait_until(lambda: processes_mentioning(marker), 120, "make to start")
    harness.signal(signum)
    check_stopped(harness, signum)
    wait_until(lambda: not processes_mentioning(marker), 10, "make and the compilers to go")
    work = build_cache.tmp_dir(cache_root() / "builds")
    if signum == signal.SIGKILL:
        # Left behind, until the next build sweeps it (a build of another test running
        # at the same time may already have).
        build_cache.sweep(cache_root() / "builds")
    assert list(work.glob(f"{marker}*")) == []


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_stopped_while_the_first_guest_starts(
    tmp_path: Path, signum: int, fast_snapshot: None
) -> None:
    [path] = scenario_copies(tmp_path, ["first"])
    harness = Harness(run_args(tmp_path / "results", path), tmp_path / "results")
    marker = f"klp-guest-{harness.proc.pid}-"
    wait_until(lambda: qemu_pids(marker), 120, "QEMU to start")
    harness.signal(signum)
    run = check_stopped(harness, signum)
    assert cut_short_reported(run) == []


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_stopped_during_a_step(tmp_path: Path, signum: int, fast_snapshot: None) -> None:
    [first] = scenario_copies(tmp_path, ["first"])
    second = UPSTREAM / "21_shadow_vars.toml"  # two steps: "step 2/2" is its own
    harness = Harness(run_args(tmp_path / "results", first, second), tmp_path / "results")
    harness.wait_for_line(r"step 2/2: unload test_klp_shadow_vars")
    harness.signal(signum)
    run = check_stopped(harness, signum)
    assert cut_short_reported(run) == []
    [run_dir] = (tmp_path / "results").iterdir()
    finished = run_dir / PROFILE / "first"  # the scenario before the interrupted one
    assert len(json.loads((finished / "observed.json").read_text())) == 3
    assert "% modprobe test_klp_livepatch" in (finished / "kernel.log").read_text()
    assert (finished / "console.log").stat().st_size > 0
