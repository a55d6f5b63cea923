"""Waiting, driven by the model's prediction.

The kernel settles transitions asynchronously (it retries every second), so after a
step the runner must wait before it observes.  It never guesses: when the model says a
transition settles, the runner polls until it has (bounded, like upstream's 60 s);
when the model says it stays pending, the runner waits until the kernel has retried
the transition once more after the step, and then observes: that confirms it really
is still pending, not merely that the first attempt failed.  A wait that runs out is
not an error here: the observation that follows shows the difference.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

from harness.guest.shell import Shell
from harness.outcome.record import StepRecord
from harness.runner.observe import LIVEPATCH_SYSFS

SETTLE_TIMEOUT = 60.0  # upstream's selftests poll 600 x 0.1 s
RETRY_INTERVAL = 1.0  # klp_transition_work_fn reschedules itself every second (HZ)
POLL = 0.05
# A sleep without starting a program (each costs tens of ms under TCG): a read with a
# timeout from a FIFO nobody writes (made by the guest's init).
IDLE_FIFO = "/run/klp-idle"


# The kernel's transition retries, counted by the kernel: a trace instance of the
# harness's own that records only the end of klp_transition_work_fn, the delayed work
# that retries a stalled transition (kernel/livepatch/transition.c,
# klp_try_complete_transition: schedule_delayed_work(&klp_transition_work,
# round_jiffies_relative(HZ))).  A tracepoint, not an ftrace user of any function, in
# an instance, not the top-level buffer that users and upstream's test-ftrace read.
RETRY_TRACE = "/sys/kernel/tracing/instances/klp-retries"
_RETRY_EVENT = f"{RETRY_TRACE}/events/workqueue/workqueue_execute_end"
# Run once in the guest that becomes the snapshot; without tracing (a kernel built
# without it) the instance is absent and a pending step idles 1.5 retry intervals.
RETRY_TRACE_SETUP = (
    "{ __a=$(grep -m1 ' klp_transition_work_fn$' /proc/kallsyms) && "
    f"mkdir -p {RETRY_TRACE} && "
    f'echo "function == 0x${{__a%% *}}" > {_RETRY_EVENT}/filter && '
    f"echo 1 > {_RETRY_EVENT}/enable; }} 2>/dev/null || rmdir {RETRY_TRACE} 2>/dev/null; true"
)
# Builtins: the retries so far (events in the buffer plus any it overwrote) in $__n.
_COUNT_RETRIES = (
    f"__n=0; for __f in {RETRY_TRACE}/per_cpu/cpu*/stats; do "
    '{ read -r _ __e; read -r _ __o; } < "$__f"; __n=$((__n + __e + __o)); done'
)


# How many retries ran during a step: counted before its action (`$__r0`, -1 without
# the trace instance) and again after its wait, before the kernel log is read.  A
# pending step's wait ends right after a retry, so the next one is about a second away
# from both reads; the prediction's `due` lines are placed by these counts
# (harness/model/retries.py).
RETRIES_BEFORE = f"__r0=-1; if [ -d {RETRY_TRACE} ]; then {_COUNT_RETRIES}; __r0=$__n; fi"
RETRIES_AFTER = (
    f'echo @@retries; if [ "${{__r0:--1}}" != -1 ]; then {_COUNT_RETRIES}; echo $((__n - __r0)); fi'
)


def parse_retries(section: str) -> int | None:
    """RETRIES_AFTER's count, None when the kernel could not count them."""
    text = section.strip()
    return int(text) if text.isdigit() else None


def retries_script(count: int) -> str:
    """Wait until `count` retries ran since RETRIES_BEFORE, or no transition is pending
    (`wait P retries=N`): the kernel retries about once a second."""
    if count <= 0:
        return "true"
    settled = settled_condition()
    condition = f"{{ {_COUNT_RETRIES}; [ $((__n - __r0)) -ge {count} ] || {settled}; }}"
    return f"if [ $__r0 != -1 ]; then {_poll_script(condition, count * 2.0 + 10)}; fi; true"


def idle(seconds: float) -> str:
    """Shell builtins that wait `seconds`."""
    return f"read -r -t {seconds:g} <> {IDLE_FIFO}"


STEP_SECONDS = 0.15  # a step that waits for nothing, roughly (TCG)


def expected_seconds(predicted: Sequence[StepRecord]) -> float:
    """A rough duration of a scenario from its prediction, for ordering work (the
    longest first, so no worker runs a long scenario alone at the end): a pending
    step, and the step that ends a pending transition, each wait for the kernel's
    next retry."""
    total, pending = 0.0, False
    for record in predicted:
        total += STEP_SECONDS
        if record.pending or pending:  # waits for a retry: pending, or settling after
            total += RETRY_INTERVAL
        pending = record.pending is not None
    return total


def predicted_patch_dirs(record: StepRecord) -> list[str]:
    """Patch directories the model says exist under /sys/kernel/livepatch."""
    return sorted({path.split("/", 1)[0] for path in record.sysfs})


def _poll_script(condition: str, timeout: float) -> str:
    """Poll `condition` every POLL seconds for `timeout` seconds of the guest's clock
    (bash's $EPOCHREALTIME, in microseconds without the point); its status is 0 once
    the condition held.  By the clock, not by a count of tries: each try costs more
    than POLL on a loaded TCG host, and a count could outlast the host's own timeout
    for the command (then the report is a timeout, not the stuck state).  A loop in
    the current shell, not a subshell: a fork costs milliseconds under TCG."""
    now = "${EPOCHREALTIME/[.,]/}"
    return (
        f"__end=$(({now} + {round(timeout * 1e6)})); __ok=1; while :; do "
        f"if {condition}; then __ok=0; break; fi; (({now} < __end)) || break; {idle(POLL)}; "
        "done; [ $__ok = 0 ]"
    )


def settled_condition(patch_dirs: Iterable[str] | None = None) -> str:
    """Shell condition, builtins only: no patch in transition and, unless
    `patch_dirs` is None, exactly these patch dirs exist (glob order is sorted, like
    `sorted()` for C identifiers)."""
    lp = LIVEPATCH_SYSFS
    if patch_dirs is None:
        have, check = "", ""
    else:
        want = "".join(f" {d}" for d in sorted(patch_dirs))
        have, check = 'have="$have ${d##*/}"; ', f' && [ "$have" = {shlex.quote(want)} ]'
    return (
        f'{{ busy=0; have=; for d in {lp}/*; do [ -d "$d" ] || continue; '
        f'{have}read -r t < "$d/transition" && [ "$t" = 1 ] && busy=1; done; '
        f"[ $busy = 0 ]{check}; }}"
    )


def retried_script(timeout: float = RETRY_INTERVAL * 3) -> str:
    """Wait until the kernel has retried the pending transition once more (or none
    is pending any more: then the observation shows the difference at once)."""
    settled = settled_condition()  # any patch dirs
    wait = _poll_script(f"{{ {_COUNT_RETRIES}; [ $__n -gt $__n0 ] || {settled}; }}", timeout)
    return (
        f"if [ -d {RETRY_TRACE} ]; then {_COUNT_RETRIES}; __n0=$__n; {wait}; "
        f"else {idle(RETRY_INTERVAL * 1.5)}; fi; true"
    )


def settle_script(record: StepRecord, timeout: float = SETTLE_TIMEOUT) -> str:
    """What to wait for after a step: the predicted settled state, or (when the model
    predicts a pending transition) the kernel's next retry; nothing after a predicted
    kernel report, whose record predicts no state (record.py `report`)."""
    if record.report:
        return "true"
    if record.pending:
        return retried_script()
    return _poll_script(settled_condition(predicted_patch_dirs(record)), timeout)


def refcnt_zero_script(module: str, timeout: float = SETTLE_TIMEOUT) -> str:
    """Upstream's unload_lp: a disabled patch drops its module reference only when its
    (asynchronous) free completes, so rmmod must wait for refcnt 0."""
    path = f"/sys/module/{shlex.quote(module)}/refcnt"
    condition = f'{{ [ ! -e {path} ] || {{ read -r r < {path} && [ "$r" = 0 ]; }}; }}'
    return _poll_script(condition, timeout)


def unpatched_tasks(shell: Shell) -> list[str]:
    """Tasks still in the minority patch state during a transition, with their stacks:
    what a stuck-transition report must show (the kernel moves every other task at its
    first attempt, so the minority is what blocks).  Builtins only: a program per
    task cost tens of seconds under TCG, on every stuck transition."""
    script = (
        "for p in /proc/[0-9]*; do read -r s 2>/dev/null < $p/patch_state || continue; "
        '[ "$s" = -1 ] && continue; IFS= read -r c 2>/dev/null < $p/comm; '
        'echo "@$s pid ${p#/proc/} $c"; '
        '{ while IFS= read -r l; do echo "    $l"; done < $p/stack; } 2>/dev/null; done; true'
    )
    tasks: dict[str, list[list[str]]] = {}
    current: list[str] = []
    for line in shell.run(script).stdout.splitlines():
        if line.startswith("@"):
            state, _, rest = line[1:].partition(" ")
            current = [f"{rest} patch_state={state}"]
            tasks.setdefault(state, []).append(current)
        else:
            current.append(line)
    if not tasks:
        return []
    minority = min(tasks.values(), key=len)
    return [line for task in minority for line in task]
