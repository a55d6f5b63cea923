"""The kernel's retry timing: which lines a stalled transition's retries log, and after
how many retries.

klp_try_complete_transition() counts its failed attempts in klp_signals_cnt, reset by
klp_start_transition() (a start or a reversal).  A failed attempt that finds the count
at a non-zero multiple of SIGNALS_TIMEOUT (15) calls klp_send_signals(), which logs
`signaling remaining tasks` only when the count is exactly 15 (7.3
kernel/livepatch/transition.c:391-392, :475-477; the same in 6.1 and 6.12).  So the
line comes with the 16th failed attempt since the (re)start, once.  A start makes the
first attempt itself (__klp_enable_patch / __klp_disable_patch call
klp_try_complete_transition() right after klp_start_transition()); a reversal makes
none (klp_reverse_transition() leaves it to the work already queued).  Every other
attempt is the delayed work klp_transition_work_fn(), queued again after each failure
with round_jiffies_relative(HZ): about one a second, a time the model does not know.

So the model does not count time.  Each predicted record says, for a transition
that is pending during the step (`StepRecord.due`): the step whose action (re)started
it (`epoch`), how many failed *retries* since then bring the 16th failed attempt
(`after`: 15 after a start whose own attempt failed, 16 after a reversal), where in
the step's log a retry's line goes (`at`: after the action's lines, before those of
the attempt that completes it) and whether a retry completes it in this step
(`completes`).  The runner records how many retries ran in each step (counted by the
kernel's tracepoint, harness/runner/waits.py), and `with_due_lines` puts the line
into the prediction of the step in which the count got there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from harness.model.kernel.klp import SIGNALS_TIMEOUT
from harness.outcome.record import StepRecord

SIGNAL_LINE = "livepatch: signaling remaining tasks"


def due(epoch: int, direct_failures: int, at: int, completes: bool) -> dict[str, int]:
    """A record's `due` for a transition (re)started by step `epoch`, whose own
    attempts failed `direct_failures` times (the start's attempt: 0 or 1)."""
    return {
        "epoch": epoch,
        "after": SIGNALS_TIMEOUT + 1 - direct_failures,
        "at": at,
        "completes": int(completes),
    }


def failed_retries(record: StepRecord, retries: int | None) -> int:
    """Failed retries in a step: all it ran, but the one that completed the
    transition (`due.completes`).  Unknown (no tracing in the kernel) counts 0."""
    ran = retries or 0
    return max(0, ran - record.due.get("completes", 0))


def with_due_lines(
    predicted: Sequence[StepRecord], retries: Sequence[int | None], index: int
) -> StepRecord:
    """The prediction of step `index` with the lines due by the retries that ran:
    `retries[i]` is how many ran in step i (observed), for i <= index."""
    want = predicted[index]
    if not want.due:
        return want
    epoch, after, at = want.due["epoch"], want.due["after"], want.due["at"]
    before = sum(failed_retries(predicted[i], retries[i]) for i in range(epoch, index))
    now = before + failed_retries(want, retries[index])
    if not before < after <= now:
        return want
    log = [*want.log[:at], SIGNAL_LINE, *want.log[at:]]
    return dataclasses.replace(want, log=log)


def retries_to_wait(
    predicted: Sequence[StepRecord], retries: Sequence[int | None], index: int, count: int
) -> int:
    """How many more retries step `index` must wait for so that `count` have run since
    the pending transition (re)started (`wait P --retries N`)."""
    want = predicted[index]
    if not want.due:
        return 0
    epoch = want.due["epoch"]
    ran = sum(retries[i] or 0 for i in range(epoch, index))
    return max(0, count - ran)
