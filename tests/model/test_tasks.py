"""Spinner threads (harness/model/kernel/tasks.py): how each kind switches, what is observed
of them, what is refused per profile, and how they are described and rendered."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.model import predict
from harness.modules.render import render_sources
from harness.outcome.record import StepRecord
from harness.runner import observe
from harness.scenario.loader import load_scenario
from tests.model.conftest import predict_text


def modules(inside: bool, cond_resched: bool = True, qs: bool = False) -> str:
    flags = f"inside = {str(inside).lower()}, cond_resched = {str(cond_resched).lower()}"
    return f"""
[[target]]
name = "tgt"
funcs = ["f1", "f2"]
spinner = {{ func = "f1", {flags}, rcu_tasks_qs = {str(qs).lower()} }}

[[patch]]
name = "lp"
[[patch.object]]
name = "tgt"
funcs = ["f1"]
"""


def run(
    tmp_path: Path,
    *steps: str,
    inside: bool,
    cond: bool = True,
    series: str = "6.1",
    qs: bool = False,
) -> list[StepRecord]:
    return predict_text(tmp_path, steps, modules(inside, cond, qs), series)


def spinner(record: StepRecord) -> str:
    return record.actors["tgt:spinner"]


def test_spinner_between_calls_switches_at_once_and_runs_the_new_code(tmp_path: Path) -> None:
    r = run(tmp_path, "load tgt spin=Y", "load lp", "disable lp", inside=False, qs=True)
    assert spinner(r[0]) == "patch_state=-1 ran=orig"
    assert r[1].pending is None and spinner(r[1]) == "patch_state=-1 ran=lp"
    assert r[2].pending is None and spinner(r[2]) == "patch_state=-1 ran=orig"


def test_spinner_inside_blocks_until_stopped(tmp_path: Path) -> None:
    r = run(tmp_path, "load tgt spin=Y", "load lp --nowait", "stop tgt", inside=True)
    assert r[1].pending == "lp" and spinner(r[1]) == "patch_state=0 ran=none"
    assert r[2].pending is None and spinner(r[2]) == "stopped"
    assert r[2].log[-1] == "livepatch: 'lp': patching complete"


@pytest.mark.parametrize("inside", [False, True])
def test_removing_a_handler_while_a_spinner_runs_is_refused(tmp_path: Path, inside: bool) -> None:
    steps = ("load tgt spin=Y", "load lp", "disable lp")
    with pytest.raises(ScenarioError, match=r"synchronize_rcu_tasks\(\) in ftrace_shutdown"):
        run(tmp_path, *steps, inside=False)
    # unloading the target stops the thread before its object is unpatched
    r = run(tmp_path, "load lp", "load tgt spin=Y", "unload tgt", inside=inside)
    assert r[2].errno == 0


def test_spinner_inside_the_new_code_lets_a_reversal_complete(tmp_path: Path) -> None:
    r = run(tmp_path, "load lp", "load tgt spin=Y", "disable lp --nowait", "enable lp", inside=True)
    assert r[2].pending == "lp" and spinner(r[2]) == "patch_state=1 ran=none"
    assert r[3].pending is None and spinner(r[3]) == "patch_state=-1 ran=none"


@pytest.mark.parametrize(("series", "refused"), [("6.1", True), ("6.12", True), ("7.3", False)])
def test_spinner_without_cond_resched_is_refused_on_voluntary_kernels(
    tmp_path: Path, series: str, refused: bool
) -> None:
    steps = ("load tgt", "start tgt", "load lp --nowait", "force lp", "stop tgt")
    if refused:
        with pytest.raises(ScenarioError, match="never give up the guest's only CPU"):
            run(tmp_path, *steps, inside=True, cond=False, series=series)
    else:
        r = run(tmp_path, *steps, inside=True, cond=False, series=series)
        assert r[2].pending == "lp" and r[3].pending is None


@pytest.mark.parametrize("series", ["6.1", "6.12", "7.3"])
@pytest.mark.parametrize(("inside", "cpu", "refused"), [
    (False, "", True),  # placed by the scheduler: running at an attempt, or not
    (True, "", False),  # blocks wherever it runs
    (False, ", cpu = 1", False),  # bound: running at every attempt (pinned_refusal on 7.3)
])  # fmt: skip
def test_unbound_spinner_between_calls_is_refused_on_two_cpus(
    tmp_path: Path, series: str, inside: bool, cpu: str, refused: bool
) -> None:
    text = "cpus = 2\n" + modules(inside).replace(
        "rcu_tasks_qs = false }", f"rcu_tasks_qs = false{cpu} }}"
    )
    steps = ("load tgt spin=Y", "load lp --nowait", "stop tgt")
    if refused:
        with pytest.raises(
            ScenarioError, match=r"steps\[0\]: `load tgt spin=Y`: .*scheduler's choice; bind it"
        ):
            predict_text(tmp_path, steps, text, series)
    elif not (cpu and series == "7.3"):
        assert predict_text(tmp_path, steps, text, series)[2].pending is None


def test_spinner_and_blocker_on_one_target_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    text = modules(True).replace('funcs = ["f1", "f2"]\n', 'funcs = ["f1", "f2"]\nblocker = "f2"\n')
    path.write_text(f'description = "t"\nsteps = ["load tgt"]\n{text}')
    with pytest.raises(ScenarioError, match="a blocker or a spinner, not both"):
        load_scenario(path)


def test_start_needs_a_spinner(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    text = modules(True).replace("spinner = ", "# ")
    path.write_text(f'description = "t"\nsteps = ["start tgt"]\n{text}')
    with pytest.raises(ScenarioError, match="has no spinner"):
        load_scenario(path)


def test_only_a_spun_in_function_gets_the_spinning_replacement(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(f'description = "t"\nsteps = ["load tgt"]\n{modules(True)}')
    sources = render_sources(load_scenario(path))
    assert "kthread_run(klp_harness_spin_fn" in sources["tgt"]
    assert sources["lp"].count("READ_ONCE(park[2])") == 1
    path.write_text(f'description = "t"\nsteps = ["load tgt"]\n{modules(False)}')
    sources = render_sources(load_scenario(path))
    assert "READ_ONCE(park[2])" not in sources["lp"] + sources["tgt"]


def test_parse_actors_reads_pid_state_and_implementation() -> None:
    out = (
        "tgt:spinner=212|1|lp: this has been live patched\n"
        "other:spinner=stopped||\n"
        "third:spinner=214|-1|none\n"
    )
    assert observe.parse_actors(out) == {
        "tgt:spinner": "patch_state=1 ran=lp",
        "other:spinner": "stopped",
        "third:spinner": "patch_state=-1 ran=none",
    }


PROCESSES = """
[[processes]]
name = "loop"
count = 3
"""


def test_processes_are_in_the_target_state_during_a_transition(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    steps = '"load tgt", "spawn loop", "load lp", "kill loop"'
    path.write_text(f'description = "t"\nsteps = [{steps}]\n{PROCESSES}{modules(True)}')
    r = predict(load_scenario(path))
    assert r[0].actors["loop"] == "stopped"
    assert r[1].actors["loop"] == "patch_state=-1 count=3"
    assert r[2].pending is None and r[2].actors["loop"] == "patch_state=-1 count=3"
    assert r[3].actors["loop"] == "stopped"


@pytest.mark.parametrize("run", ["getpid", "sleep"])
def test_spawning_a_running_group_again_changes_nothing(tmp_path: Path, run: str) -> None:
    """As the runner does (harness/runner/actions.py): more processes would run beyond
    what the group's `kill` reaches (found by the fuzzer: `spawn getpid` twice)."""
    path = tmp_path / "t.toml"
    steps = '"spawn loop", "spawn loop", "load lp --nowait", "kill loop", "stop tgt"'
    table = PROCESSES + (f'run = "{run}"\n' if run == "sleep" else "")
    path.write_text(f'description = "t"\nsteps = [{steps}]\n{table}{modules(True)}')
    r = predict(load_scenario(path))
    assert r[1].actors == r[0].actors and r[1].actors["loop"] == "patch_state=-1 count=3"
    assert r[3].actors["loop"] == "stopped"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[[processes]]\nname = "loop"\ncount = 9\n', "must be 1..8"),
        ('[[processes]]\nname = "lo op"\n', "not a C identifier"),
        ('[[processes]]\nname = "loop"\ncolour = 1\n', "unknown key 'colour'"),
    ],
)
def test_bad_processes_tables_are_one_line(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(f'description = "t"\nsteps = ["load tgt"]\n{table}{modules(True)}')
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


def test_spawn_names_a_group(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(f'description = "t"\nsteps = ["spawn other"]\n{PROCESSES}{modules(True)}')
    with pytest.raises(ScenarioError, match="not a \\[\\[processes\\]\\] group"):
        load_scenario(path)


def test_parse_actors_reads_every_process_state() -> None:
    out = "loop=procs| 1 1 1\nidle=procs|stopped\nmixed=procs| 0 1\n"
    assert observe.parse_actors(out) == {
        "loop": "patch_state=1 count=3",
        "idle": "stopped",
        "mixed": "patch_state=0,1 count=2",
    }
