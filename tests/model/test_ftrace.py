"""Other ftrace users on a patched function: the model's kprobe rules per profile, the
loader's checks of a target's `kprobe`, and what the template registers."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.model.predict import predict
from harness.modules.render import render_target
from harness.scenario.loader import load_scenario
from harness.scenario.types import Kprobe, TargetModule
from tests.model.conftest import predict_text

COEXIST = Path(__file__).parents[1] / "scenarios" / "coexist"
BUSY = "modprobe: ERROR: could not insert 'kp_post': Device or resource busy"


def test_post_handler_kprobe_first_makes_the_livepatch_fail() -> None:
    for series in ("6.1", "6.12", "7.3"):
        records = predict(load_scenario(COEXIST / "01_kprobe_post_handler_first.toml"), series)
        assert records[1].errno == 16
        assert (
            "livepatch: failed to register ftrace handler for function 'cmdline_proc_show' (-16)"
            in records[1].log
        )
        assert records[2].log[-1] == "test_klp_kprobe: kprobe on cmdline_proc_show was hit"
        assert records[3].errno == 0  # the IPMODIFY is free again


@pytest.mark.parametrize(("series", "lost"), [("6.1", False), ("6.12", False), ("7.3", True)])
def test_post_handler_kprobe_after_the_livepatch(series: str, lost: bool) -> None:
    """EBUSY up to 6.12; since the guard() rework register_kprobe() returns 0 for a
    kprobe it could not arm, which then never fires."""
    records = predict(load_scenario(COEXIST / "03_livepatch_first_then_kprobes.toml"), series)
    assert records[1].errno == (0 if lost else 16)
    assert (BUSY in records[1].log) is not lost
    assert records[2].errno == 0  # without post_handler: no IPMODIFY, coexists
    hit = "never hit" if lost else "was hit"
    assert records[6].log[-1].endswith(hit)


@pytest.mark.parametrize(("series", "hit"), [("6.1", False), ("6.12", False), ("7.3", True)])
def test_ftrace_enabled_off_silences_a_kprobe(series: str, hit: bool) -> None:
    records = predict(load_scenario(COEXIST / "04_kprobe_ftrace_enabled.toml"), series)
    assert records[2].errno == (0 if hit else 16)  # the livepatch's ops are PERMANENT
    assert records[4].log[-1].endswith("was hit" if hit else "was never hit")


KPROBE_ELSEWHERE = """\
description = "A kprobe on a function the model cannot count calls of."
steps = ["load kp"]
[[target]]
name = "kp"
kprobe = { func = "do_sys_openat2" }
"""


def test_a_kprobe_goes_on_a_function_whose_calls_are_known(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(KPROBE_ELSEWHERE)
    with pytest.raises(ScenarioError, match=r"target\[0\]\.kprobe\.func.*cmdline_proc_show"):
        load_scenario(path)
    path.write_text(KPROBE_ELSEWHERE.replace('"do_sys_openat2" }', '"x", when = 1 }'))
    with pytest.raises(ScenarioError, match="unknown key 'when'"):
        load_scenario(path)


def test_template_registers_the_kprobe_with_or_without_post_handler() -> None:
    post = render_target(TargetModule("kp", kprobe=Kprobe("cmdline_proc_show")))
    plain = render_target(TargetModule("kp", kprobe=Kprobe("meminfo_proc_show", False)))
    assert "register_kprobe(&klp_harness_kprobe)" in post
    assert ".post_handler = klp_harness_kprobe_post" in post
    assert "post_handler" not in plain.split("static struct kprobe")[1].split("};")[0]
    assert '.symbol_name = "meminfo_proc_show"' in plain
    assert "kprobe" not in render_target(TargetModule("t", ("f",)))


TRACE = """\
description = "Traces."
steps = [STEPS]
[[target]]
name = "t"
funcs = ["alpha"]
[[patch]]
name = "p"
[[patch.object]]
name = "vmlinux"
funcs = ["cmdline_proc_show", "version_proc_show"]
[[patch.object]]
name = "t"
funcs = ["alpha"]
"""


def _trace_scenario(tmp_path: Path, steps: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(TRACE.replace("STEPS", steps))
    return path


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ('"untrace"', r"steps\[0\]: `untrace` without a `trace`"),
        ('"trace vmlinux:cmdline_proc_show"', "traced to the end"),
        ('"trace t:alpha", "trace t:alpha", "untrace"', r"steps\[1\]: `trace` while t:alpha"),
        ('"load t", "trace t:alpha", "unload t", "untrace"', r"steps\[2\]: `unload t` while"),
        ('"trace p:version_proc_show", "untrace"', "no replacement of 'version_proc_show'"),
        ('"trace vmlinux:nope", "untrace"', "vmlinux has no function 'nope'"),
    ],
)
def test_trace_steps_are_checked_when_loaded(tmp_path: Path, steps: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario(_trace_scenario(tmp_path, steps))


def test_a_traced_module_must_be_loaded(tmp_path: Path) -> None:
    scenario = load_scenario(_trace_scenario(tmp_path, '"trace p:alpha", "untrace"'))
    with pytest.raises(ScenarioError, match="p is not loaded"):
        predict(scenario)


def test_tracing_a_replacement_sees_only_the_calls_sent_there(tmp_path: Path) -> None:
    steps = '"load t", "load p", "trace p:alpha", "call t:alpha", "untrace", "disable p", '
    steps += '"trace p:alpha", "call t:alpha", "untrace", "enable p", "trace t:alpha", "untrace"'
    records = predict(load_scenario(_trace_scenario(tmp_path, steps)))
    assert records[4].log == ["livepatch: trace p:alpha: called"]
    assert records[8].log == ["livepatch: trace p:alpha: not called"]  # p disabled
    # the original's call site sees the calls the patch redirects (the observation's)
    assert records[11].log == ["livepatch: trace t:alpha: called"]


def test_runner_filters_and_names() -> None:
    from harness.runner.tracers import filter_of, trace_script, untrace_script
    from harness.scenario.step_types import Trace

    scenario = load_scenario(COEXIST / "05_trace_livepatched_function.toml")
    patch = Trace("test_klp_livepatch", "cmdline_proc_show")
    assert filter_of(scenario, patch) == (
        "klp_harness_new_0_cmdline_proc_show:mod:test_klp_livepatch",
        "klp_harness_new_0_cmdline_proc_show",
    )
    assert filter_of(scenario, Trace("vmlinux", "cmdline_proc_show"))[0] == "cmdline_proc_show"
    assert "set_ftrace_filter; __rc=$?" in trace_script(scenario, patch)
    assert "livepatch: trace $__label: not called" in untrace_script()


def test_kretprobe_coexists_in_both_orders() -> None:
    for series in ("6.1", "6.12", "7.3"):
        records = predict(load_scenario(COEXIST / "09_kretprobe_docs.toml"), series)
        assert [r.errno for r in records] == [0] * len(records)
        assert records[3].log[-1] == "kretp: kretprobe on cmdline_proc_show was hit"
        assert records[5].log[-1] == "kretp: kretprobe on cmdline_proc_show was hit"


def test_kretprobe_template_and_its_checks(tmp_path: Path) -> None:
    c = render_target(TargetModule("r", kprobe=Kprobe("cmdline_proc_show", False, True)))
    assert "register_kretprobe(&klp_harness_kretprobe)" in c
    assert "unregister_kretprobe(&klp_harness_kretprobe)" in c
    path = tmp_path / "s.toml"
    path.write_text(
        KPROBE_ELSEWHERE.replace(
            '"do_sys_openat2" }', '"cmdline_proc_show", kretprobe = true, post_handler = true }'
        )
    )
    with pytest.raises(ScenarioError, match="a kretprobe has no post_handler"):
        load_scenario(path)


def test_a_kprobe_in_the_body_sees_only_the_original() -> None:
    for series in ("6.1", "6.12", "7.3"):
        records = predict(load_scenario(COEXIST / "10_kprobe_in_redirected_body.toml"), series)
        assert records[3].log[-1] == "kp_body: kprobe on cmdline_proc_show was never hit"
        assert records[6].log[-1] == "kp_body: kprobe on cmdline_proc_show was hit"


def test_body_kprobe_template_and_checks(tmp_path: Path) -> None:
    c = render_target(TargetModule("b", kprobe=Kprobe("cmdline_proc_show", False, body=True)))
    assert "ret = klp_harness_register_body_kprobe();" in c
    assert "klp_harness_kprobe.offset = 9;" in c
    path = tmp_path / "s.toml"
    path.write_text(
        KPROBE_ELSEWHERE.replace(
            '"do_sys_openat2" }', '"cmdline_proc_show", kretprobe = true, body = true }'
        )
    )
    with pytest.raises(ScenarioError, match="a kretprobe goes on the function's entry"):
        load_scenario(path)


BODY_KPROBE_BESIDE_A_SPINNER = """\
[[target]]
name = "kp_body"
kprobe = {{ func = "cmdline_proc_show", body = true }}

[[target]]
name = "t_spin"
funcs = ["s1"]
spinner = {{ func = "s1", inside = {inside}, cond_resched = true, rcu_tasks_qs = {qs} }}
"""


@pytest.mark.parametrize("series", ["6.1", "6.12", "7.3"])
@pytest.mark.parametrize("step", ["load kp_body", "unload kp_body"])
def test_a_body_kprobe_beside_a_spinner_is_refused(tmp_path: Path, series: str, step: str) -> None:
    """Its optimizer holds kprobe_mutex in synchronize_rcu_tasks() until the spinner
    stops (seen on 7.3: the next module load hung in kprobes_module_callback)."""
    steps = [
        "load t_spin",
        *(["load kp_body"] if step.startswith("unload") else []),
        "start t_spin",
        step,
    ]
    with pytest.raises(ScenarioError, match=r"kprobe_optimizer\(\) holds kprobe_mutex.*t_spin"):
        predict_text(
            tmp_path, steps, BODY_KPROBE_BESIDE_A_SPINNER.format(inside="true", qs="false"), series
        )
    # a spinner between calls that reports its RCU Tasks quiescent states lets it finish
    modules = BODY_KPROBE_BESIDE_A_SPINNER.format(inside="false", qs="true")
    records = predict_text(tmp_path, steps, modules, series)
    assert records[-1].errno == 0
