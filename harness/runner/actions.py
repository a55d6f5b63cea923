"""Carry out one scenario step in the guest, the way upstream's selftests do it.

Each step's script writes upstream's marker line (`% modprobe ...`, `% echo 0 > ...`)
to the kernel log first, then runs the userland tool; the session sends it with the
wait and the observation in one round trip, and `action_errno` reads the operation's
errno from its report.  The exact lines written are listed in docs/runner-protocol.md;
the model predicts them.
"""

from __future__ import annotations

import errno
import shlex

from harness.errors import HarnessError
from harness.guest.shell import errno_from_message, kmsg_write
from harness.runner.observe import LIVEPATCH_SYSFS, func_source
from harness.runner.protocol import ERR_FILE
from harness.runner.tracers import trace_script, untrace_script
from harness.runner.trigger import replacements, trigger_script, watched
from harness.runner.waits import idle
from harness.scenario.step_types import (
    Attach,
    Call,
    Check,
    Detach,
    Disable,
    Enable,
    Force,
    Kill,
    Load,
    Park,
    Release,
    SetParam,
    Spawn,
    Start,
    Step,
    Stop,
    SysctlFtrace,
    Trace,
    Trigger,
    Unload,
    Untrace,
    Wait,
)
from harness.scenario.types import PatchModule, Processes, Scenario, TargetModule

TOOL_TIMEOUT = 120.0  # a load whose transition stalls still returns: klp_enable_patch is async
# Where the scenario's modules are (`$__release` is read with a builtin: `$(uname -r)`
# would start a program, tens of ms under TCG).
EXTRA_DIR = "/lib/modules/$__release/extra"


def _timed(scenario: Scenario, target: str) -> bool:
    """A module file's work that sleeps a number of seconds (Blocker.timed)."""
    module = scenario.module(target)
    return isinstance(module, TargetModule) and bool(module.blocker and module.blocker.timed)


def blocker_param(scenario: Scenario, target: str) -> str:
    module = scenario.module(target)
    assert isinstance(module, TargetModule) and module.blocker is not None
    return module.blocker.param


def _sysfs_write(path: str, value: str) -> str:
    """`echo value > path` after logging it."""
    return (
        f"{kmsg_write(f'% echo {value} > {path}')}; "
        f"echo {shlex.quote(value)} 2>{ERR_FILE} > {shlex.quote(path)}; __rc=$?"
    )


def _load(step: Load) -> str:
    """klp-load (the guest's static stand-in for modprobe, images/klp-load.c); on
    failure the runner logs modprobe's message, as upstream's load_failing_mod does."""
    params = [f"{k}={v}" for k, v in step.params]
    marker = kmsg_write(" ".join(["% modprobe", step.module, *params]))
    args = " ".join(shlex.quote(a) for a in params)
    return (
        f"read -r __release < /proc/sys/kernel/osrelease; {marker}; "
        f"klp-load {shlex.quote(step.module)} {EXTRA_DIR}/{step.module}.ko {args} "
        f"2>{ERR_FILE}; __rc=$?; "
        f'[ $__rc = 0 ] || {{ read -r __e < {ERR_FILE}; echo "$__e" > /dev/kmsg; }}'
    )


def _unload(step: Unload) -> str:
    """rmmod through busybox, which calls delete_module(O_NONBLOCK) and reports the
    kernel's errno; kmod's rmmod refuses a module in use itself, hiding it."""
    return (
        f"{kmsg_write(f'% rmmod {step.module}')}; "
        f"busybox rmmod {shlex.quote(step.module)} 2>{ERR_FILE}; __rc=$?"
    )


def _sysctl(step: SysctlFtrace) -> str:
    ok = kmsg_write(f"livepatch: kernel.ftrace_enabled = {step.value}")
    return (
        f"sysctl -q kernel.ftrace_enabled={step.value} 2>{ERR_FILE}; __rc=$?; "
        f"if [ $__rc = 0 ]; then {ok}; else "
        f'read -r __e < {ERR_FILE}; echo "livepatch: $__e" > /dev/kmsg; fi'
    )


def _call(step: Call) -> str:
    src = func_source(step.object, step.func)
    # Builtins only: each matching line becomes one kernel log record, as grep's
    # output did.
    return (
        f"{{ while IFS= read -r l; do [[ $l == *'live patched'* ]] && echo \"$l\" > /dev/kmsg; "
        f"done < {src}; }} 2>/dev/null; test -e {src}; __rc=$?"
    )


PROCS_FILE = "/run/klp-procs-{}"  # the pids of a [[processes]] group, one a line
BPF_PIN = "/sys/fs/bpf/klp-{}"  # a [[bpf]] program's link (images/klp-bpf.c)


SLEEP_SECONDS = 1000000  # longer than any scenario: a sleeper ends by `kill` only
NR_NANOSLEEP, NR_CLOCK_NANOSLEEP = 35, 230  # x86_64 (arch/x86/entry/syscalls)
SPAWN_TICKS = 500  # 0.01 s idles a sleeper may take to fall asleep (TCG: ~0.1 s)


def _spawn(group: Processes) -> str:
    """`count` children of the runner's shell, detached from the channel's output:
    klp-getpid (images/klp-getpid.c: getpid() in a loop), or busybox `sleep`s.  A
    sleeper counts as spawned once /proc/<pid>/syscall shows it blocked in nanosleep:
    a step after `spawn` finds it asleep there (the model's assumption), not still
    starting.  A group that runs already is left as it is (its pids file says so):
    starting more would leave the first ones running unseen, and beyond `kill`."""
    pids = PROCS_FILE.format(group.name)
    return f"if [ -e {pids} ]; then __rc=0; else {_start_group(group, pids)}; fi"


def _start_group(group: Processes, pids: str) -> str:
    if group.run == "sleep":
        child = f"busybox sleep {SLEEP_SECONDS} </dev/null >/dev/null 2>&1 &"
    else:
        child = "klp-getpid </dev/null >/dev/null 2>&1 &"
    script = f": > {pids}; for __i in {{1..{group.count}}}; do {child} echo $! >> {pids}; done"
    if group.run != "sleep":
        return script + "; __rc=0"
    asleep = (
        "{ read -r __n __r < /proc/$__p/syscall && "
        f"[[ $__n == {NR_NANOSLEEP} || $__n == {NR_CLOCK_NANOSLEEP} ]]; }} 2>/dev/null"
    )
    # each sleeper within SPAWN_TICKS idles, else the step fails (ECHILD: gone)
    wait = f"__t=0; until {asleep}; do ((++__t > {SPAWN_TICKS})) && break; {idle(0.01)}; done"
    return (
        f"{script}; __rc=0; while read -r __p; do {wait}; "
        f"{asleep} || {{ __rc=1; echo 'spawn: {group.name}: No child processes' > {ERR_FILE}; }}; "
        f"done < {pids}"
    )


def _kill(name: str) -> str:
    """SIGKILL, then reap: they are children of the runner's shell."""
    pids = PROCS_FILE.format(name)
    return (
        f'__k=; {{ while read -r __p; do __k="$__k $__p"; done < {pids}; }} 2>/dev/null; '
        f'[ -n "$__k" ] && {{ kill -9 $__k; wait $__k; }} 2>/dev/null; rm -f {pids}; __rc=0'
    )


def action_script(scenario: Scenario, step: Step) -> str:
    """Shell that performs `step` (builtins and the one tool the step needs) and
    leaves its exit status in `$__rc` and the tool's error message in ERR_FILE.
    Waiting for a transition is not part of it: the runner waits as the model
    predicts."""
    match step:
        case Load():
            return _load(step)
        case Unload():
            return _unload(step)
        case Enable(patch=p):
            return _sysfs_write(f"{LIVEPATCH_SYSFS}/{p}/enabled", "1")
        case Disable(patch=p):
            return _sysfs_write(f"{LIVEPATCH_SYSFS}/{p}/enabled", "0")
        case Force(patch=p):
            return _sysfs_write(f"{LIVEPATCH_SYSFS}/{p}/force", "1")
        case SetParam(module=m, param=p, value=v):
            return _sysfs_write(f"/sys/module/{m}/parameters/{p}", v)
        case Park(target=t):
            return _sysfs_write(f"/sys/module/{t}/parameters/{blocker_param(scenario, t)}", "Y")
        case Release(target=t) if _timed(scenario, t):
            return "__rc=0"  # its work returns by itself: the step's wait waits for it
        case Release(target=t):
            return _sysfs_write(f"/sys/module/{t}/parameters/{blocker_param(scenario, t)}", "N")
        case Start(target=t) | Stop(target=t):
            module = scenario.module(t)
            assert isinstance(module, TargetModule) and module.spinner is not None
            value = "Y" if isinstance(step, Start) else "N"
            return _sysfs_write(f"/sys/module/{t}/parameters/{module.spinner.param}", value)
        case Spawn(name=n):
            return _spawn(next(p for p in scenario.processes if p.name == n))
        case Kill(name=n):
            return _kill(n)
        case SysctlFtrace():
            return _sysctl(step)
        case Call():
            return _call(step)
        case Wait():
            return "__rc=0"
        case Trace():
            return trace_script(scenario, step)
        case Untrace():
            return untrace_script()
        case Attach(name=n):
            prog = next(p for p in scenario.bpf if p.name == n)
            return (
                f"klp-bpf attach {prog.prog} {prog.func} {BPF_PIN.format(n)} 2>{ERR_FILE}; __rc=$?"
            )
        case Detach(name=n):
            return f"klp-bpf detach {BPF_PIN.format(n)} 2>{ERR_FILE}; __rc=$?"
        case Check(patch=p):
            return _check(scenario, p)
        case Trigger():
            return trigger_script(step, watched(scenario), replacements(scenario))
    raise AssertionError(step)


def parse_report(section: str) -> tuple[int, str]:
    """REPORT's output: the exit status and the tool's message."""
    lines = section.splitlines()
    try:
        return int(lines[0]), "\n".join(lines[1:])
    except (IndexError, ValueError):
        raise HarnessError(f"a step's report is unreadable: {section[:200]!r}") from None


def _check(scenario: Scenario, patch: str) -> str:
    """The patch's check command in a subshell, its output dropped but for errors."""
    module = scenario.module(patch)
    assert isinstance(module, PatchModule) and module.check
    return f"( {module.check} ) </dev/null >/dev/null 2>{ERR_FILE}; __rc=$?"


def action_errno(step: Step, exit_code: int, message: str) -> int:
    """0, or the positive errno of the step's operation, from its tool's message."""
    if exit_code == 0:
        return 0
    if isinstance(step, Call):
        return errno.ENOENT
    if isinstance(step, Trigger):
        return exit_code  # the command's own exit status
    if isinstance(step, Check):
        return 0  # the step ran; whether the command passed is in the record's `ran`
    return errno_from_message(message)
