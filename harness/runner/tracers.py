"""`trace` / `untrace` steps: ftrace's function tracer on one function, the way
upstream's test-ftrace.sh does it (`trace_function`, `check_traced_functions`,
`cleanup_tracing` in its functions.sh), with shell builtins only.

The filter names the original (`FUNC`, or `FUNC:mod:TARGET` for a target's function)
or a patch's replacement (`klp_harness_new_<j>_FUNC:mod:PATCH`, the name
kmod_templates/livepatch.c.j2 gives it).  `untrace` stops tracing, looks for a line
whose function field is that name (`<task>-<pid> [cpu] flags ts: NAME <-parent`, a
module's function may be followed by ` [module]`) and logs the answer as a
`livepatch:` line, which the model predicts (harness/model/kernel/ftrace.py).
"""

from __future__ import annotations

import shlex

from harness.runner.protocol import ERR_FILE
from harness.scenario.step_types import Trace
from harness.scenario.traces import traced_replacement
from harness.scenario.types import VMLINUX, Scenario

TRACEFS = "/sys/kernel/tracing"
STATE = "/run/klp-trace"  # what `trace` started: the printed name, then the step's label


def filter_of(scenario: Scenario, step: Trace) -> tuple[str, str]:
    """(what set_ftrace_filter gets, the function name the trace prints)."""
    patch = scenario.patches_by_name().get(step.object)
    if patch is not None:
        name = traced_replacement(patch, step.func, {t.name for t in scenario.targets})
        assert name is not None  # the loader checked it
        return f"{name}:mod:{patch.name}", name
    if step.object == VMLINUX:
        return step.func, step.func
    return f"{step.func}:mod:{step.object}", step.func


def trace_script(scenario: Scenario, step: Trace) -> str:
    """Reset the tracer, filter on the function, start it; the step's errno is the
    filter write's (EINVAL when nothing matches)."""
    wanted, name = filter_of(scenario, step)
    t = TRACEFS
    return (
        f"echo {shlex.quote(name)} {shlex.quote(step.label)} > {STATE}; "
        f"echo 0 > {t}/tracing_on; echo nop > {t}/current_tracer; echo > {t}/trace; "
        f"echo {shlex.quote(wanted)} 2>{ERR_FILE} > {t}/set_ftrace_filter; __rc=$?; "
        f'[ "$__rc" = 0 ] && echo function > {t}/current_tracer && echo 1 > {t}/tracing_on'
    )


def untrace_script() -> str:
    """Stop, search the trace for the function `trace` recorded, log the answer,
    clean up."""
    t = TRACEFS
    called = 'echo "livepatch: trace $__label: called" > /dev/kmsg'
    missed = 'echo "livepatch: trace $__label: not called" > /dev/kmsg'
    return (
        f"read -r __name __label < {STATE}; echo 0 > {t}/tracing_on; __seen=0; "
        f"while IFS= read -r __l; do [[ $__l == '#'* ]] && continue; "
        '[[ $__l == *": $__name "* || $__l == *": $__name" ]] && { __seen=1; break; }; '
        f"done < {t}/trace; "
        f'if [ "$__seen" = 1 ]; then {called}; else {missed}; fi; '
        f"echo nop > {t}/current_tracer; echo > {t}/set_ftrace_filter; echo > {t}/trace; __rc=0"
    )
