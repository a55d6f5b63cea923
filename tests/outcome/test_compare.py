"""The comparison must be able to fail: altered observations are reported precisely."""

import copy

from harness.outcome.compare import first_mismatch, render_mismatch
from harness.outcome.record import StepRecord


def records() -> list[StepRecord]:
    return [
        StepRecord(
            index=0,
            step="load test_klp_livepatch",
            log=[
                "% modprobe test_klp_livepatch",
                "livepatch: enabling patch 'test_klp_livepatch'",
                "livepatch: 'test_klp_livepatch': patching complete",
            ],
            sysfs={"test_klp_livepatch/enabled": "1", "test_klp_livepatch/transition": "0"},
            modules={"test_klp_livepatch": "1"},
            impls={"vmlinux:cmdline_proc_show": "test_klp_livepatch"},
        ),
        StepRecord(
            index=1,
            step="disable test_klp_livepatch",
            log=["% echo 0 > /sys/kernel/livepatch/test_klp_livepatch/enabled"],
            modules={"test_klp_livepatch": "0"},
            impls={"vmlinux:cmdline_proc_show": "orig"},
        ),
    ]


def test_equal_records_match() -> None:
    assert first_mismatch(records(), records()) is None


def test_altered_log_line_is_named() -> None:
    observed = records()
    observed[0].log[1] = "livepatch: enabling patch 'something_else'"
    mismatch = first_mismatch(records(), observed)
    assert mismatch is not None and mismatch.index == 0 and mismatch.fields == ["log"]
    text = render_mismatch(mismatch, observed)
    assert "step 1: load test_klp_livepatch" in text
    assert "-livepatch: enabling patch 'test_klp_livepatch'" in text
    assert "+livepatch: enabling patch 'something_else'" in text


def test_altered_errno_is_named() -> None:
    observed = copy.deepcopy(records())
    observed[1].errno = 22
    mismatch = first_mismatch(records(), observed)
    assert mismatch is not None and mismatch.index == 1 and mismatch.fields == ["errno"]
    text = render_mismatch(mismatch, observed)
    assert "expected 0 (success), observed -EINVAL (Invalid argument)" in text
    assert "[1] load test_klp_livepatch" in text  # the step before it


def test_altered_implementation_is_named() -> None:
    observed = copy.deepcopy(records())
    observed[1].impls["vmlinux:cmdline_proc_show"] = "test_klp_livepatch"
    mismatch = first_mismatch(records(), observed)
    assert mismatch is not None and mismatch.fields == ["impls"]
    assert (
        "vmlinux:cmdline_proc_show: expected 'orig', observed 'test_klp_livepatch'"
        in render_mismatch(mismatch, observed)
    )


def test_function_not_called_at_all_is_said() -> None:
    """`none` where something was to run: the command did not reach the function."""
    expected = records()
    expected[1].ran = {"vmlinux:flags_show,3": "orig*1", "vmlinux:schedule": "orig"}
    observed = copy.deepcopy(expected)
    observed[1].ran = {"vmlinux:flags_show,3": "none*0", "vmlinux:schedule": "lp"}
    mismatch = first_mismatch(expected, observed)
    assert mismatch is not None and mismatch.fields == ["ran"]
    assert mismatch.diffs[0].lines == (
        "vmlinux:flags_show,3: expected 'orig*1', observed 'none*0' - the command did not "
        "call it at all (neither the original nor a replacement ran)",
        "vmlinux:schedule: expected 'orig', observed 'lp'",
    )
