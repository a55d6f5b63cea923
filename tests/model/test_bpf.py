"""BPF programs and sleeping processes (harness/scenario/bpf.py, harness/model/kernel/bpf.py):
parsing, the scripts that run them, and what the model predicts per profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.model import predict
from harness.model.kernel import bpf
from harness.outcome.record import StepRecord
from harness.runner.actions import action_script
from harness.scenario.loader import load_scenario
from harness.scenario.types import Scenario
from tests.model.conftest import predict_text

MODULES = """
[[processes]]
name = "zz"
count = 2
run = "sleep"

[[bpf]]
name = "nx"
prog = "{prog}"
func = "hrtimer_nanosleep"

[[bpf]]
name = "cx"
prog = "fexit"
func = "cmdline_proc_show"

[[bpf]]
name = "cn"
prog = "fentry"
func = "cmdline_proc_show"

[[target]]
name = "tgt"
funcs = ["f1"]

[[patch]]
name = "lp"
[[patch.object]]
name = "tgt"
funcs = ["f1"]

[[patch]]
name = "lc"
[[patch.object]]
name = "vmlinux"
funcs = ["cmdline_proc_show"]
"""


def scenario(tmp_path: Path, *steps: str, prog: str = "fexit", extra: str = "") -> Scenario:
    quoted = ", ".join(f'"{step}"' for step in steps)
    path = tmp_path / "t.toml"
    path.write_text(f'description = "t"\nsteps = [{quoted}]\n{MODULES.format(prog=prog)}{extra}')
    return load_scenario(path)


def run(tmp_path: Path, *steps: str, prog: str = "fexit", series: str = "6.1") -> list[StepRecord]:
    return predict_text(tmp_path, steps, MODULES.format(prog=prog), series)


STALL = ("load tgt", "attach nx", "spawn zz", "load lp --nowait", "wait lp retries=2", "kill zz")


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_a_sleeper_under_an_fexit_trampoline_holds_the_transition(
    tmp_path: Path, series: str
) -> None:
    r = run(tmp_path, *STALL, series=series)
    assert r[2].actors["zz"] == "patch_state=-1 count=2"
    assert r[3].pending == "lp" and r[3].actors["zz"] == "patch_state=0 count=2"
    assert r[4].pending == "lp"
    assert r[5].pending is None and r[5].actors["zz"] == "stopped"
    assert r[5].log[-1] == "livepatch: 'lp': patching complete"


def test_7_3_walks_the_trampoline_frame(tmp_path: Path) -> None:
    r = run(tmp_path, *STALL, series="7.3")
    assert r[3].pending is None and r[3].actors["zz"] == "patch_state=-1 count=2"


def test_fentry_leaves_no_frame(tmp_path: Path) -> None:
    assert run(tmp_path, *STALL, prog="fentry")[3].pending is None


def test_a_sleeper_that_slept_before_the_attach_has_no_frame(tmp_path: Path) -> None:
    r = run(tmp_path, "load tgt", "spawn zz", "attach nx", "load lp --nowait")
    assert r[3].pending is None


def test_a_wait_that_could_reach_the_signals_is_refused(tmp_path: Path) -> None:
    steps = (*STALL[:4], "wait lp retries=12")
    with pytest.raises(ScenarioError, match="16th failed attempt"):
        run(tmp_path, *steps)
    assert run(tmp_path, *steps, series="7.3")[4].pending is None  # nothing holds it


def test_fentry_then_fexit_on_a_livepatched_function_warns_on_6_1(tmp_path: Path) -> None:
    """The runner reads cmdline_proc_show after every step: the attach step calls it."""
    steps = ("load lc", "attach cn", "attach cx", "call vmlinux:cmdline_proc_show")
    r = run(tmp_path, *steps)
    assert len(r) == 3  # nothing is predicted after the kernel's report
    assert r[2] == StepRecord(2, "attach cx", report=bpf.NULL_FUNC_WARNING["6.1"])
    r = run(tmp_path, *steps, series="6.12")
    assert not any(record.report for record in r)
    assert r[3].impls["vmlinux:cmdline_proc_show"] == "lc"
    # fexit alone, or programs on a function without a livepatch: no report on 6.1
    alone = run(tmp_path, "load lc", "attach cx", "call vmlinux:cmdline_proc_show")
    assert alone[2].impls["vmlinux:cmdline_proc_show"] == "lc" and not alone[2].report
    assert [rec.report for rec in run(tmp_path, "attach cn", "attach cx", "load lc")] == [""] * 3


@pytest.mark.parametrize(
    "steps",
    [
        ("attach cn", "load lc", "attach cx"),  # ..._PEER told the fentry trampoline
        ("load lc", "attach cx", "attach cn"),  # the register path's -EAGAIN told it
    ],
)
def test_a_trampoline_told_of_the_livepatch_does_not_break_on_6_1(
    tmp_path: Path, steps: tuple[str, ...]
) -> None:
    """coexist/13 (found by the fuzzer on 6.1: the first order gave no report)."""
    records = run(tmp_path, *steps, "call vmlinux:cmdline_proc_show")
    assert not any(record.report for record in records)
    assert records[-1].impls["vmlinux:cmdline_proc_show"] == "lc"


def test_the_livepatch_gone_the_trampoline_is_untold(tmp_path: Path) -> None:
    """..._DISABLE_SHARE_IPMODIFY_PEER clears the flag: a livepatch loaded again under
    the same fentry trampoline is told again (PEER), so no report either; but one
    loaded first, then a new fentry-only trampoline, then fexit, WARNs as bugs/05."""
    told = run(tmp_path, "attach cn", "load lc", "disable lc", "unload lc", "load lc", "attach cx")
    assert not any(record.report for record in told)
    untold = run(tmp_path, "attach cn", "load lc", "detach cn", "attach cn", "attach cx")
    assert untold[-1].report == bpf.NULL_FUNC_WARNING["6.1"]


def test_patching_a_function_on_the_sleepers_stack_is_refused(tmp_path: Path) -> None:
    extra = (
        '\n[[patch]]\nname = "ln"\n[[patch.object]]\nname = "vmlinux"\n'
        'funcs = ["hrtimer_nanosleep"]\n'
    )
    path = tmp_path / "t.toml"
    path.write_text(
        f'description = "t"\nsteps = ["spawn zz"]\n{MODULES.format(prog="fexit")}{extra}'
    )
    with pytest.raises(ScenarioError, match="hrtimer_nanosleep, on a sleeper's stack"):
        predict(load_scenario(path), "6.1")


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (("detach nx",), "before `attach`"),
        (("attach nx", "attach nx"), "attached already"),
        (("attach nope",), "not a [[bpf]] program"),
    ],
)
def test_bad_attachments_are_one_line(tmp_path: Path, steps: tuple[str, ...], message: str) -> None:
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]")):
        scenario(tmp_path, *steps)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[[bpf]]\nname = "b"\nprog = "kprobe"\nfunc = "f"', "must be one of fentry, fexit"),
        ('[[bpf]]\nname = "b"\nprog = "fexit"', "func"),
        ('[[bpf]]\nname = "nx"\nprog = "fexit"\nfunc = "f"', "duplicate program"),
        ('[[processes]]\nname = "p"\nrun = "spin"', "must be one of getpid, sleep"),
    ],
)
def test_bad_tables_are_one_line(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        scenario(tmp_path, "load tgt", extra="\n" + table + "\n")


def test_scripts_attach_by_pin_and_wait_for_sleepers(tmp_path: Path) -> None:
    s = scenario(tmp_path, "attach nx", "spawn zz", "detach nx")
    attach, spawn, detach = (action_script(s, step) for step in s.steps)
    assert attach.startswith("klp-bpf attach fexit hrtimer_nanosleep /sys/fs/bpf/klp-nx ")
    assert detach.startswith("klp-bpf detach /sys/fs/bpf/klp-nx ")
    assert "busybox sleep" in spawn and "/proc/$__p/syscall" in spawn


SPINNER = """
[[target]]
name = "sp"
funcs = ["s1"]
spinner = { func = "s1", inside = true, cond_resched = true, rcu_tasks_qs = false }
"""


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_the_last_detach_waits_for_a_spinner_in_rcu_tasks(tmp_path: Path, series: str) -> None:
    """The function's last program takes its own ftrace ops away: synchronize_rcu_tasks()
    never ends while a spinner runs (found: klp-bpf hung in unlink on 6.1; on 6.12 the
    release work held ftrace_lock and the next module load hung)."""
    steps = ("attach cn", "load sp spin=Y", "detach cn")
    with pytest.raises(ScenarioError, match=r"detach cn.* removes an ftrace handler"):
        predict(scenario(tmp_path, *steps, extra=SPINNER), series)


def test_a_detach_that_leaves_a_program_or_shares_the_ops_does_not_wait(tmp_path: Path) -> None:
    """Another program on the function keeps the trampoline (modified, not
    unregistered); 7.3's trampolines share one static ops, never shut down."""
    two = ("attach cn", "load sp spin=Y", "attach cx", "detach cn", "stop sp")
    assert [r.errno for r in predict(scenario(tmp_path, *two, extra=SPINNER), "6.1")] == [0] * 5
    last = ("load sp spin=Y", "attach cn", "detach cn", "stop sp")
    assert [r.errno for r in predict(scenario(tmp_path, *last, extra=SPINNER), "7.3")] == [0] * 4


def test_the_first_direct_call_waits_for_a_spinner_on_6_1(tmp_path: Path) -> None:
    """6.1 grows the empty direct_functions hash and waits in synchronize_rcu_tasks()
    before freeing the old one (found: klp-bpf hung in register_ftrace_direct_multi);
    a direct call beside another does not grow it, and 6.12 frees it by
    call_rcu_tasks()."""
    first = ("load sp spin=Y", "attach cn")
    with pytest.raises(ScenarioError, match=r"attach cn.* makes the first BPF direct call"):
        predict(scenario(tmp_path, first[0], first[1], extra=SPINNER), "6.1")
    beside = ("attach nx", "load sp spin=Y", "attach cn", "stop sp")
    assert [r.errno for r in predict(scenario(tmp_path, *beside, extra=SPINNER), "6.1")] == [0] * 4
    assert [r.errno for r in predict(scenario(tmp_path, *first, extra=SPINNER), "6.12")] == [0] * 2
