"""`--expect fixed` turns the model's known bugs off, `as-is` is the model itself."""

from __future__ import annotations

import pytest

from harness.export.expect import Expect, bugs_of, expected_profile
from harness.export.plan import plan
from harness.model.predict import predict
from harness.model.profiles import profile_for
from tests.export.conftest import shipped


def test_as_is_is_the_series_profile() -> None:
    assert expected_profile("7.3", Expect.AS_IS) is profile_for("7.3")


def test_fixed_turns_each_known_bug_off() -> None:
    fixed = expected_profile("7.3", Expect.FIXED)
    assert not fixed.kprobe_arm_error_lost
    assert fixed.sysfs_stack_order  # a difference, not a bug: kept
    six_one = expected_profile("6.1", Expect.FIXED)
    assert not six_one.bpf_modify_clears_ops_func and six_one.klp_relocs_cleared


def test_known_bugs_per_series() -> None:
    assert any("register_kprobe() returns 0" in bug for bug in bugs_of("7.3"))
    assert not any("register_kprobe() returns 0" in bug for bug in bugs_of("6.12"))
    assert any("ftrace.c:7660" in bug for bug in bugs_of("6.1"))


@pytest.mark.parametrize("series", ["6.1", "6.12", "7.3"])
def test_as_is_plans_what_predict_predicts(series: str) -> None:
    scenario = shipped("coexist/03")
    assert [s.record for s in plan(scenario, series, Expect.AS_IS)] == predict(scenario, series)


def test_fixed_7_3_refuses_the_unarmed_kprobe() -> None:
    """The bug of finding 1: as-is 7.3 loads kp_post, fixed it fails with EBUSY as 6.12."""
    scenario = shipped("coexist/03")
    as_is = plan(scenario, "7.3", Expect.AS_IS)
    fixed = plan(scenario, "7.3", Expect.FIXED)
    assert as_is[1].record.errno == 0
    assert fixed[1].record.errno == 16
    assert [s.record.log for s in fixed] == [
        s.record.log for s in plan(scenario, "6.12", Expect.AS_IS)
    ]


def test_fixed_6_1_predicts_no_warning() -> None:
    scenario = shipped("bugs/05")
    assert plan(scenario, "6.1", Expect.AS_IS)[-1].record.report
    fixed = plan(scenario, "6.1", Expect.FIXED)
    assert len(fixed) == len(scenario.steps) and not any(s.record.report for s in fixed)


@pytest.mark.parametrize(
    ("series", "where"),
    [
        ("6.1", "kernel/kprobes.c:1126 __disarm_kprobe_ftrace"),
        ("6.12", "kernel/kprobes.c:1130 disarm_kprobe_ftrace"),
        ("7.3", "kernel/kprobes.c:1203 disarm_kprobe_ftrace"),
    ],
)
def test_finding_5_warns_as_is_and_not_fixed(series: str, where: str) -> None:
    """bugs/06: the aggregate's last disarm on kprobe_ipmodify_ops WARNs on every
    profile; a kernel without the bug unloads the kretprobe, whose handler ran."""
    scenario = shipped("bugs/06")
    as_is = plan(scenario, series, Expect.AS_IS)
    assert [s.record.report for s in as_is] == [""] * 4 + [f"warning at {where}"]
    fixed = plan(scenario, series, Expect.FIXED)
    assert not any(s.record.report for s in fixed)
    assert fixed[-1].record.log == [
        "% rmmod kretp",
        "kretp: kretprobe on meminfo_proc_show was hit",
    ]


@pytest.mark.parametrize("series", ["6.1", "6.12", "7.3"])
def test_finding_6_refuses_the_reload_as_is_and_not_fixed(series: str) -> None:
    """bugs/07: a patch whose pre_patch failed at its target's coming keeps its klp
    relocations written on every profile; a kernel without the bug loads the target
    again once the callback succeeds, and patches it."""
    scenario = shipped("bugs/07")
    assert plan(scenario, series, Expect.AS_IS)[4].record.errno == 8  # ENOEXEC
    fixed = plan(scenario, series, Expect.FIXED)[4].record
    assert fixed.errno == 0
    assert fixed.impls["klp_fc_target:alpha"] == "klp_fc_patch"
