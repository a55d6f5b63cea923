"""The kernel's retry timing (harness/model/retries.py): the signalling line is due
with the 16th failed attempt since a transition (re)started, placed by the retries the
runner counted in each step."""

from __future__ import annotations

import pytest

from harness.model.retries import SIGNAL_LINE, retries_to_wait, with_due_lines
from harness.runner import waits
from tests.model.conftest import ONE_BLOCKED_PATCH, Predict


def test_a_start_counts_its_own_attempt_a_reversal_does_not(predict_steps: Predict) -> None:
    r = predict_steps(
        "load tgt block_transition=Y",
        "load lp --nowait",
        "call tgt:f1",
        "disable lp --nowait",
    )
    assert r[0].due == {}
    assert r[1].due == {"epoch": 1, "after": 15, "at": len(r[1].log), "completes": 0}
    assert r[2].due["epoch"] == 1
    # the disable reverses: klp_start_transition() again, no attempt of its own
    assert r[3].due["epoch"] == 3 and r[3].due["after"] == 16


def test_the_line_comes_once_in_the_step_whose_retries_reach_the_count(
    predict_steps: Predict,
) -> None:
    r = predict_steps(
        "load tgt block_transition=Y", "load lp --nowait", "call tgt:f1", "call tgt:f1"
    )
    counts: list[int | None] = [0, 3, 10, 4]
    assert SIGNAL_LINE not in with_due_lines(r, counts, 1).log
    assert SIGNAL_LINE not in with_due_lines(r, counts, 2).log  # 13 so far
    assert with_due_lines(r, counts, 3).log[-1] == SIGNAL_LINE  # 17: the 15th is here
    assert SIGNAL_LINE not in with_due_lines(r, [0, 3, 12, 4], 3).log  # it came before


def test_a_retry_that_completes_is_no_failure(predict_steps: Predict) -> None:
    r = predict_steps("load tgt block_transition=Y", "load lp --nowait", "release tgt")
    assert r[2].due["completes"] == 1
    # 14 failed, then one failed and the completing one: the 15th failure is here,
    # before the completion's lines
    want = with_due_lines(r, [0, 14, 2], 2)
    at = r[2].due["at"]
    assert want.log[at] == SIGNAL_LINE and want.log[at + 1 :] == r[2].log[at:]
    assert SIGNAL_LINE not in with_due_lines(r, [0, 14, 1], 2).log


def test_unknown_counts_add_nothing(predict_steps: Predict) -> None:
    r = predict_steps("load tgt block_transition=Y", "load lp --nowait", "call tgt:f1")
    assert with_due_lines(r, [None, None, None], 2) is r[2]


def test_wait_retries_waits_for_the_rest(predict_steps: Predict) -> None:
    r = predict_steps("load tgt block_transition=Y", "load lp --nowait", "wait lp retries=16")
    assert r[2].pending == "lp"
    assert retries_to_wait(r, [0, 2, None], 2, 16) == 14
    assert retries_to_wait(r, [0, 20, None], 2, 16) == 0


def test_retry_counts_are_read_from_the_steps_report() -> None:
    assert waits.parse_retries("3\n") == 3
    assert waits.parse_retries("") is None
    assert "@@retries" in waits.RETRIES_AFTER
    assert waits.retries_script(0) == "true"


@pytest.fixture
def modules() -> str:
    return ONE_BLOCKED_PATCH
