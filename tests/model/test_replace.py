"""Atomic replace and klp_state beyond upstream's cases: nops and dynamic objects during
the transition, modules coming during it, reversal, and state compatibility."""

from __future__ import annotations

import pytest

from tests.model.conftest import CUMULATIVE_REPLACE, SYSTEM_STATES, Predict


def test_nops_and_dynamic_objects_are_visible_during_the_transition(predict_steps: Predict) -> None:
    r = predict_steps("load blk block_transition=Y", "load lp1", "load cum --nowait", "release blk")
    assert r[2].pending == "cum"
    assert r[2].sysfs["cum/tgt/patched"] == "0"  # static object, target not loaded
    assert "tgt:f1" not in r[2].impls  # tgt is not loaded
    assert r[3].sysfs == {
        "cum/enabled": "1",
        "cum/force": "<write-only>",
        "cum/transition": "0",
        "cum/vmlinux/patched": "1",
        "cum/tgt/patched": "0",
        "cum/blk/patched": "1",
    }
    assert r[3].modules["lp1"] == "0"


def test_dynamic_object_and_nop_for_a_loaded_module(predict_steps: Predict) -> None:
    r = predict_steps(
        "load tgt",
        "load blk block_transition=Y",
        "load lp1",
        "load cum --nowait",
        "call tgt:f1",
        "release blk",
    )
    assert r[3].impls["tgt:f1"] == "orig"  # a switched caller runs the nop: original
    assert r[3].sysfs["cum/tgt/patched"] == "1"
    assert r[4].log == []
    assert r[5].impls["tgt:f1"] == "orig" and "lp1/enabled" not in r[5].sysfs


def test_module_coming_during_replace_gets_old_patch_callbacks_first(
    predict_steps: Predict,
) -> None:
    r = predict_steps(
        "load blk block_transition=Y",
        "load lp1",
        "load cum --nowait",
        "load tgt",
        "release blk",
    )
    coming = "[MODULE_STATE_COMING] Full formed, running module_init"
    assert r[3].log[1:] == [
        "livepatch: applying patch 'lp1' to loading module 'tgt'",
        f"lp1: pre_patch_callback: tgt -> {coming}",
        f"lp1: post_patch_callback: tgt -> {coming}",
        "livepatch: applying patch 'cum' to loading module 'tgt'",
        "tgt: tgt_init",
        "tgt: f1 enter",
        "tgt: f1 exit",
    ]
    assert r[4].log[1:] == [  # lp1 is unpatched from tgt without its callbacks
        "blk: g exit",
        "livepatch: 'cum': completing patching transition",
        "cum: post_patch_callback: vmlinux",
        "livepatch: 'cum': patching complete",
    ]
    assert r[4].impls == {"tgt:f1": "orig", "tgt:f2": "cum", "blk:g": "cum"}


def test_reversed_replace_leaves_older_patches_in_effect(predict_steps: Predict) -> None:
    r = predict_steps(
        "load tgt",
        "load blk block_transition=Y",
        "load lp1",
        "load cum --nowait",
        "disable cum",
        "unload cum",
        "unload lp1",
    )
    assert r[4].log[1:] == [
        "livepatch: 'cum': reversing transition from patching to unpatching",
        "livepatch: 'cum': starting unpatching transition",
        "livepatch: 'cum': completing unpatching transition",
        "cum: post_unpatch_callback: vmlinux",
        "livepatch: 'cum': unpatching complete",
    ]
    assert r[4].impls == {"tgt:f1": "lp1", "tgt:f2": "orig", "blk:g": "orig"}
    assert r[4].sysfs["lp1/enabled"] == "1"
    assert (r[5].errno, r[6].errno) == (0, 11)


def test_task_in_the_original_blocks_the_reversal_of_a_replace(predict_steps: Predict) -> None:
    """A task that switched during the replace runs the nop, i.e. the original code;
    reversing checks the nop's own function, the original, so it blocks."""
    r = predict_steps(
        "load tgt",
        "load blk block_transition=Y",
        "load lp1",
        "load cum --nowait",
        "park tgt",
        "disable cum --nowait",
        "release tgt",
    )
    assert r[5].pending == "cum"
    assert r[6].log[1:3] == ["tgt: f1 exit", "livepatch: 'cum': completing unpatching transition"]
    assert r[6].pending is None


def test_force_of_a_replace_pins_the_replaced_modules(predict_steps: Predict) -> None:
    r = predict_steps(
        "load tgt",
        "load lp1",
        "park tgt",
        "load cum --nowait",
        "force cum",
        "release tgt",
        "unload lp1",
        "disable cum",
        "unload cum",
    )
    assert r[3].pending == "cum"  # tgt's work sleeps in lp1's f1, below cum's nop
    assert r[4].pending is None and r[4].modules["lp1"] == "1"
    assert r[6].errno == 11  # forced: pinned for ever
    assert r[8].errno == 0  # the replacing patch itself was not forced


def test_state_versions_decide_compatibility(predict_steps: Predict) -> None:
    r = predict_steps(
        "load s_v2",
        "load s_v1",
        "load plain",
        "load cum_plain",
        "disable plain",
        "disable s_v2",
        modules=SYSTEM_STATES,
    )
    incompatible = (
        "livepatch: Livepatch patch ({}) is not compatible with the already installed livepatches."
    )
    assert r[1].errno == 22 and r[1].log[1] == incompatible.format("s_v1")
    assert r[2].errno == 0  # a non-replace patch without the state is fine
    assert r[3].errno == 22 and r[3].log[1] == incompatible.format("cum_plain")
    assert r[5].log[1:] == [
        "livepatch: 's_v2': initializing unpatching transition",
        "s_v2: pre_unpatch_callback: vmlinux",
        "s_v2: restore_console_loglevel: restoring console_loglevel",
        "s_v2: restore_console_loglevel: restoring console_loglevel (state 9)",
        "livepatch: 's_v2': starting unpatching transition",
        "livepatch: 's_v2': completing unpatching transition",
        "s_v2: post_unpatch_callback: vmlinux",
        "s_v2: free_loglevel_state: freeing space for the stored console_loglevel",
        "s_v2: free_loglevel_state: freeing space for the stored console_loglevel (state 9)",
        "livepatch: 's_v2': unpatching complete",
    ]


def test_stacked_state_patches_hand_the_state_back(predict_steps: Predict) -> None:
    r = predict_steps("load s_v1", "load s_v2", "disable s_v2", modules=SYSTEM_STATES)
    assert r[1].log[4:6] == [
        "s_v2: allocate_loglevel_state: space to store console_loglevel already allocated",
        "s_v2: allocate_loglevel_state: allocating space to store console_loglevel (state 9)",
    ]
    assert (
        "s_v2: restore_console_loglevel: passing the console_loglevel change back to the old "
        "livepatch" in r[2].log
    )
    assert "s_v2: free_loglevel_state: keeping space to store console_loglevel" in r[2].log


def test_sympos_0_and_1_are_one_func_for_the_nops() -> None:
    """klp_find_func (v6.19, in every profile through stable): a replace naming a
    unique function with sympos 1 over a patch naming it with 0 needs no nop for it."""
    from harness.model.kernel.klp import KlpFunc, KlpObject
    from harness.model.kernel.replace import klp_find_func

    old_obj = KlpObject(name="vmlinux", patch=None)  # type: ignore[arg-type]
    old_obj.funcs = [KlpFunc(old_name="f", obj=old_obj, sympos=0)]
    new_obj = KlpObject(name="vmlinux", patch=None)  # type: ignore[arg-type]
    new_obj.funcs = [KlpFunc(old_name="f", obj=new_obj, sympos=1)]
    assert klp_find_func(new_obj, old_obj.funcs[0]) is new_obj.funcs[0]
    other = KlpFunc(old_name="f", obj=old_obj, sympos=2)
    assert klp_find_func(new_obj, other) is None


@pytest.fixture
def modules() -> str:
    return CUMULATIVE_REPLACE
