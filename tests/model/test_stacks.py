"""The func stacks a prediction carries for the report to draw (record.py `stacks`):
pushed in enable order, a cumulative patch's nops on top during its transition, gone
with the replaced patch once it completes (transition.c: klp_complete_transition ->
klp_unpatch_replaced_patches, klp_discard_nops)."""

from __future__ import annotations

from tests.model.conftest import CUMULATIVE_REPLACE, Predict


def test_stacks_grow_in_enable_order_and_shrink_on_disable(predict_steps: Predict) -> None:
    r = predict_steps("load tgt", "load lp1", "load lp2", "disable lp2")
    assert r[0].stacks == {}
    assert r[1].stacks == {"tgt:f1": ["lp1"]}
    assert r[2].stacks == {"tgt:f1": ["lp1", "lp2"], "tgt:f2": ["lp2"]}
    assert r[3].stacks == {"tgt:f1": ["lp1"]}


def test_a_replacement_puts_nops_on_top_until_its_transition_completes(
    predict_steps: Predict,
) -> None:
    r = predict_steps(
        "load tgt",
        "load blk block_transition=Y",
        "load lp1",
        "call blk:g",
        "load cum --nowait",
        "release blk",
        modules=CUMULATIVE_REPLACE,
    )
    assert r[4].pending == "cum"
    assert r[4].stacks == {"blk:g": ["cum"], "tgt:f1": ["lp1", "cum:nop"], "tgt:f2": ["cum"]}
    assert r[5].stacks == {"blk:g": ["cum"], "tgt:f2": ["cum"]}
