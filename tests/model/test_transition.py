"""The consistency model beyond upstream's cases: parked tasks, reverse, force, busy
errors, module hooks during transitions, and the steps the model refuses."""

from __future__ import annotations

import pytest

from harness.errors import ScenarioError
from harness.outcome.record import StepRecord
from tests.model.conftest import TWO_PATCHES_ON_BLOCKED_TARGETS, Predict


def lines(record: StepRecord) -> list[str]:
    """The log without the runner's leading line."""
    return record.log[1:]


def test_parked_task_blocks_enable_until_released(predict_steps: Predict) -> None:
    r = predict_steps(
        "load tgt block_transition=Y", "load lp1 --nowait", "call tgt:f1", "release tgt"
    )
    assert r[1].pending == "lp1" and r[1].sysfs["lp1/transition"] == "1"
    assert r[1].sysfs["lp1/enabled"] == "1"  # the target state, not "done"
    assert r[2].log == ["lp1: this has been live patched"]  # a switched caller
    assert lines(r[3]) == [
        "tgt: f1 exit",
        "livepatch: 'lp1': completing patching transition",
        "lp1: post_patch_callback: vmlinux",
        "lp1: post_patch_callback: tgt -> [MODULE_STATE_LIVE] Normal state",
        "livepatch: 'lp1': patching complete",
    ]
    assert r[3].pending is None


def test_task_in_new_code_blocks_disable_and_reverse_runs_post_patch_again(
    predict_steps: Predict,
) -> None:
    r = predict_steps(
        "load tgt",
        "load lp1",
        "park tgt",
        "disable lp1 --nowait",
        "enable lp1",
        "release tgt",
    )
    assert r[3].pending == "lp1" and r[3].sysfs["lp1/enabled"] == "0"
    assert r[3].impls["tgt:f1"] == "orig"
    assert lines(r[4]) == [
        "livepatch: 'lp1': reversing transition from unpatching to patching",
        "livepatch: 'lp1': starting patching transition",
        "livepatch: 'lp1': completing patching transition",
        "lp1: post_patch_callback: vmlinux",
        "lp1: post_patch_callback: tgt -> [MODULE_STATE_LIVE] Normal state",
        "livepatch: 'lp1': patching complete",
    ]
    assert r[4].impls["tgt:f1"] == "lp1" and r[4].pending is None
    assert lines(r[5]) == ["tgt: f1 exit"]


def test_enabling_checks_the_previous_implementation(predict_steps: Predict) -> None:
    """A task in lp1's f1 blocks lp2 (whose f1 goes on top of lp1's), but not a patch of
    an unrelated function."""
    r = predict_steps("load tgt", "load lp1", "park tgt", "load lp2 --nowait", "release tgt")
    assert r[3].pending == "lp2"
    assert r[4].pending is None and r[4].impls == {"tgt:f1": "lp2", "tgt:f2": "lp2"}


def test_unloading_the_target_releases_and_reverts(predict_steps: Predict) -> None:
    r = predict_steps("load tgt block_transition=Y", "load lp1 --nowait", "unload tgt")
    assert lines(r[2]) == [
        "tgt: f1 exit",
        "tgt: tgt_exit",
        "livepatch: reverting patch 'lp1' on unloading module 'tgt'",  # no pre_unpatch
        "lp1: post_unpatch_callback: tgt -> [MODULE_STATE_GOING] Going away",
        "livepatch: 'lp1': completing patching transition",
        "lp1: post_patch_callback: vmlinux",
        "livepatch: 'lp1': patching complete",
    ]
    assert r[2].sysfs["lp1/tgt/patched"] == "0"


def test_busy_errors_while_a_transition_is_pending(predict_steps: Predict) -> None:
    start = ("load tgt", "load lp2", "park tgt", "load lp1 --nowait")
    r = predict_steps(*start, "load lp2", "unload lp1", "disable lp2", "release tgt")
    assert r[2].pending is None and r[3].pending == "lp1"  # lp1's f1 on top of lp2's
    assert (r[4].errno, r[4].log) == (0, ["% modprobe lp2"])  # already loaded: kmod no-op
    assert r[5].errno == 11  # EAGAIN: the patch holds its module
    assert r[6].errno == 16  # EBUSY: another transition
    r = predict_steps(*start, "enable lp1", "force lp2", "release tgt")
    assert r[4].errno == 22  # EINVAL: already enabled
    assert r[5].errno == 22  # EINVAL: not the transition patch
    assert all(len(x.log) == 1 for x in r[4:6])


def test_load_during_a_transition_is_ebusy_without_kernel_lines(predict_steps: Predict) -> None:
    r = predict_steps("load tgt block_transition=Y", "load lp1 --nowait", "load lp2", "release tgt")
    assert r[2].errno == 16
    assert r[2].log == [
        "% modprobe lp2",
        "modprobe: ERROR: could not insert 'lp2': Device or resource busy",
    ]
    assert "lp2" not in r[2].modules


def test_force_of_an_enable_marks_nothing(predict_steps: Predict) -> None:
    r = predict_steps(
        "load tgt block_transition=Y",
        "load lp1 --nowait",
        "force lp1",
        "disable lp1",
        "unload lp1",
    )
    assert lines(r[2])[0] == "livepatch: forcing remaining tasks to the patched state"
    assert lines(r[2])[-1] == "livepatch: 'lp1': patching complete"
    assert r[4].errno == 0


def test_force_of_a_disable_pins_the_module_for_ever(predict_steps: Predict) -> None:
    r = predict_steps(
        "load tgt",
        "load lp1",
        "park tgt",
        "disable lp1 --nowait",
        "force lp1",
        "release tgt",
        "unload lp1",
    )
    assert lines(r[4])[-1] == "livepatch: 'lp1': unpatching complete"
    assert r[4].sysfs == {} and r[4].modules["lp1"] == "1"
    assert r[6].errno == 11 and r[6].modules["lp1"] == "1"


def test_force_and_enable_of_missing_or_idle_patches(predict_steps: Predict) -> None:
    r = predict_steps(
        "force lp1", "load lp1", "force lp1", "enable lp1", "disable lp1", "disable lp1"
    )
    assert [x.errno for x in r] == [2, 0, 22, 22, 0, 2]


def test_coming_hook_failure_reverts_earlier_patches_only(predict_steps: Predict) -> None:
    r = predict_steps("load lp1", "load lp2", "set lp2 pre_patch_ret -19", "load tgt")
    assert r[3].errno == 19
    coming = "[MODULE_STATE_COMING] Full formed, running module_init"
    assert lines(r[3]) == [
        "livepatch: applying patch 'lp1' to loading module 'tgt'",
        f"lp1: pre_patch_callback: tgt -> {coming}",
        f"lp1: post_patch_callback: tgt -> {coming}",
        "livepatch: applying patch 'lp2' to loading module 'tgt'",
        f"lp2: pre_patch_callback: tgt -> {coming}",
        "livepatch: pre-patch callback failed for object 'tgt'",
        "livepatch: patch 'lp2' failed for module 'tgt', refusing to load module 'tgt'",
        f"lp1: pre_unpatch_callback: tgt -> {coming}",
        "livepatch: reverting patch 'lp1' on unloading module 'tgt'",
        f"lp1: post_unpatch_callback: tgt -> {coming}",
        "modprobe: ERROR: could not insert 'tgt': No such device",
    ]
    assert "tgt" not in r[3].modules and r[3].impls == {}


def test_ftrace_disabled_refuses_a_target_in_the_coming_hook(predict_steps: Predict) -> None:
    r = predict_steps(
        "sysctl ftrace_enabled=0",
        "load lp1",
        "load tgt",
        "sysctl ftrace_enabled=1",
        "load tgt",
        "sysctl ftrace_enabled=0",
    )
    assert r[1].errno == 0  # lp1 patches nothing loaded: no ftrace handler needed
    coming = "[MODULE_STATE_COMING] Full formed, running module_init"
    assert r[2].errno == 16
    assert lines(r[2]) == [
        "livepatch: applying patch 'lp1' to loading module 'tgt'",
        f"lp1: pre_patch_callback: tgt -> {coming}",
        "livepatch: failed to register ftrace handler for function 'f1' (-16)",
        "livepatch: failed to apply patch 'lp1' to module 'tgt' (-16)",
        f"lp1: post_unpatch_callback: tgt -> {coming}",
        "livepatch: patch 'lp1' failed for module 'tgt', refusing to load module 'tgt'",
        "modprobe: ERROR: could not insert 'tgt': Device or resource busy",
    ]
    assert r[4].errno == 0 and r[4].impls["tgt:f1"] == "lp1"
    assert r[5].errno == 16


def test_a_load_that_would_wait_for_ever_is_refused(predict_steps: Predict) -> None:
    with pytest.raises(
        ScenarioError, match=r"steps\[1\]: `load lp1` would wait for ever.*--nowait"
    ):
        predict_steps("load tgt block_transition=Y", "load lp1")
    with pytest.raises(ScenarioError, match=r"steps\[2\]: `wait lp1` would wait for ever"):
        predict_steps("load tgt block_transition=Y", "load lp1 --nowait", "wait lp1")
    with pytest.raises(ScenarioError, match="blocked by tgt's work parked in tgt:f1 \\(lp1\\)"):
        predict_steps("load tgt", "load lp1", "park tgt", "disable lp1")


def test_a_transition_blocked_long_is_predicted_with_its_retry_timing(
    predict_steps: Predict,
) -> None:
    calls = ["call tgt:f2"] * 8
    r = predict_steps("load tgt block_transition=Y", "load lp1 --nowait", *calls)
    assert all(record.pending == "lp1" for record in r[1:])
    assert all(record.due["epoch"] == 1 and record.due["after"] == 15 for record in r[1:])


@pytest.fixture
def modules() -> str:
    return TWO_PATCHES_ON_BLOCKED_TARGETS
