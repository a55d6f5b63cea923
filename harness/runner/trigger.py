"""`trigger` steps: run a command and observe which implementations of the watched
functions ran, for any function and without relying on what it prints.

* A patch's implementation: every generated replacement counts its calls
  (`/sys/kernel/debug/klp_harness_calls/<patch>`, lines `<object>:<func> <calls>`).
* The original: a kprobe *inside* its body, on the first instruction after the ftrace
  call site (`func+5`, or `func+9` behind an ENDBR64; the kernel refuses an offset
  that is not an instruction boundary, so `+5` is tried first).  A redirected call
  never gets there: livepatch changes the return address at the ftrace call site.
  It is an int3 (or optimized jump) probe, not an ftrace one, so it neither shares
  livepatch's ftrace ops nor depends on `kernel.ftrace_enabled`.  Its hits are read
  from `kprobe_profile`; the global trace buffer is switched off, so probes cost a
  counter increment and record nothing.

The probes are registered in the first step's round trip; a trigger step reads every
counter before and after the command (shell builtins only), in its own round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.model.trigger import ran_text
from harness.runner.actions import ERR_FILE
from harness.scenario.types import VMLINUX, Scenario, Trigger

TRACEFS = "/sys/kernel/tracing"
CALLS_DIR = "/sys/kernel/debug/klp_harness_calls"
PROBE = "klp_orig_"


def watched(scenario: Scenario) -> list[tuple[str, str]]:
    """Every (object, func) some trigger step watches, in first-seen order."""
    seen: dict[tuple[str, str], None] = {}
    for step in scenario.steps:
        if isinstance(step, Trigger):
            for w in step.watch:
                seen[(w.object, w.func)] = None
    return list(seen)


def _probe(i: int, obj: str, func: str) -> str:
    """Register and enable probe i on obj:func's body (a module's: `MOD:FUNC`; it
    must be loaded for the offset to be checked, so module probes are registered by
    the trigger steps, once the event does not exist yet; the kernel re-arms them
    when the module loads again)."""
    events = f"{TRACEFS}/kprobe_events"
    where = func if obj == VMLINUX else f"{obj}:{func}"
    add = " || ".join(f'echo "p:{PROBE}{i} {where}+{off}" >> {events}' for off in (5, 9))
    enable = f"echo 1 > {TRACEFS}/events/kprobes/{PROBE}{i}/enable"
    return f"{{ {add}; }} 2>/dev/null && {enable} 2>/dev/null"


def setup_script(funcs: Sequence[tuple[str, str]]) -> str:
    """Switch the global trace buffer off; register the probes of vmlinux functions."""
    if not funcs:
        return ""
    parts = [f"echo 0 > {TRACEFS}/tracing_on"]
    parts += [_probe(i, obj, func) for i, (obj, func) in enumerate(funcs) if obj == VMLINUX]
    return "; ".join(parts)


_COUNTS = (
    "__klp_counts() { "
    f'while read -r __n __h __m; do echo "$1 k $__n $__h"; done < {TRACEFS}/kprobe_profile; '
    f'for __f in {CALLS_DIR}/*; do [ -f "$__f" ] || continue; '
    'while read -r __k __c; do echo "$1 c ${__f##*/} $__k $__c"; done < "$__f"; done; }'
)


def trigger_script(step: Trigger, funcs: Sequence[tuple[str, str]] = ()) -> str:
    """Module probes not registered yet, counters, the command (its own stdout
    dropped, stderr kept for the report), counters again; the exit status is the
    command's."""
    keys = {w.key for w in step.watch}
    probes = [
        f"[ -d {TRACEFS}/events/kprobes/{PROBE}{i} ] || {{ {_probe(i, obj, func)}; }}; "
        for i, (obj, func) in enumerate(funcs)
        if obj != VMLINUX and f"{obj}:{func}" in keys
    ]
    return (
        "".join(probes) + f"{_COUNTS}; echo @@trigger; __klp_counts B; "
        f"( {step.command} ) </dev/null >/dev/null 2>{ERR_FILE}; __rc=$?; __klp_counts A"
    )


def parse_ran(out: str, step: Trigger, funcs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Per watched function: who ran (counter deltas), and the number of calls when the
    step asks for it: the larger of the patches' total and the original's count (a
    default replacement counts one call in both)."""
    before: dict[tuple[str, ...], int] = {}
    after: dict[tuple[str, ...], int] = {}
    for line in out.splitlines():
        words = line.split()
        try:
            value = int(words[-1])
        except (ValueError, IndexError):
            continue
        table = before if words[0] == "B" else after
        table[tuple(words[1:-1])] = value
    probes = {f"{PROBE}{i}": f"{obj}:{func}" for i, (obj, func) in enumerate(funcs)}
    ran: dict[str, str] = {}
    for w in step.watch:
        patches: dict[str, int] = {}
        orig = 0
        for key, value in after.items():
            delta = value - before.get(key, 0)
            if delta <= 0:
                continue
            if key[0] == "k" and probes.get(key[1]) == w.key:
                orig += delta
            elif key[0] == "c" and len(key) == 3 and key[2] == w.key:
                patches[key[1]] = patches.get(key[1], 0) + delta
        impls = [*patches, *(["orig"] if orig else [])]
        count = max(sum(patches.values()), orig)
        ran[w.key] = ran_text(impls, None if w.count is None else count)
    return ran
