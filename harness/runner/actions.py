"""Carry out one scenario step in the guest, the way upstream's selftests do it.

Each step writes upstream's marker line (`% modprobe ...`, `% echo 0 > ...`) to the
kernel log first, runs the userland tool, and returns the errno of the operation.  The
exact lines written are listed in docs/runner-protocol.md; the model predicts them.
"""

from __future__ import annotations

import errno
import shlex

from harness.runner.observe import LIVEPATCH_SYSFS, func_source
from harness.runner.shell import Shell, errno_from_message, kmsg_write
from harness.scenario.types import (
    Call,
    Disable,
    Enable,
    Force,
    Load,
    Park,
    Release,
    Scenario,
    SetParam,
    Step,
    SysctlFtrace,
    TargetModule,
    Unload,
    Wait,
)

TOOL_TIMEOUT = 120.0  # a load whose transition stalls still returns: klp_enable_patch is async


def blocker_param(scenario: Scenario, target: str) -> str:
    module = scenario.module(target)
    assert isinstance(module, TargetModule) and module.blocker is not None
    return module.blocker.param


def _error_line(stderr: str) -> str:
    """The last line a failing tool printed: the one naming the error."""
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else "?"


def _sysfs_write(shell: Shell, path: str, value: str) -> int:
    """`echo value > path` after logging it; the errno of the write."""
    cmd = f"echo {shlex.quote(value)} > {shlex.quote(path)}"
    result = shell.run(f"{kmsg_write(f'% echo {value} > {path}')}; {cmd}", timeout=TOOL_TIMEOUT)
    return 0 if result.exit_code == 0 else errno_from_message(result.stderr)


def _load(shell: Shell, step: Load) -> int:
    args = " ".join([step.module, *(f"{k}={v}" for k, v in step.params)])
    result = shell.run(f"{kmsg_write(f'% modprobe {args}')}; modprobe {args}", timeout=TOOL_TIMEOUT)
    if result.exit_code == 0:
        return 0
    message = _error_line(result.stderr)
    shell.run(kmsg_write(message))  # upstream's load_failing_mod logs modprobe's error
    return errno_from_message(message)


def _unload(shell: Shell, step: Unload) -> int:
    """rmmod through busybox, which calls delete_module(O_NONBLOCK) and reports the
    kernel's errno; kmod's rmmod refuses a module in use itself, hiding it."""
    rmmod = f"busybox rmmod {shlex.quote(step.module)}"
    result = shell.run(f"{kmsg_write(f'% rmmod {step.module}')}; {rmmod}", timeout=TOOL_TIMEOUT)
    return 0 if result.exit_code == 0 else errno_from_message(result.stderr)


def _sysctl(shell: Shell, step: SysctlFtrace) -> int:
    result = shell.run(f"sysctl -q kernel.ftrace_enabled={step.value}")
    if result.exit_code == 0:
        shell.run(kmsg_write(f"livepatch: kernel.ftrace_enabled = {step.value}"))
        return 0
    message = _error_line(result.stderr)
    shell.run(kmsg_write(f"livepatch: {message}"))
    return errno_from_message(message)


def _call(shell: Shell, step: Call) -> int:
    src = func_source(step.object, step.func)
    # Builtins only: each matching line becomes one kernel log record, as grep's
    # output did (a program costs tens of ms to start under TCG).
    result = shell.run(
        f"{{ while IFS= read -r l; do [[ $l == *'live patched'* ]] && echo \"$l\" > /dev/kmsg; "
        f"done < {src}; }} 2>/dev/null; test -e {src}"
    )
    return 0 if result.exit_code == 0 else errno.ENOENT


def perform(shell: Shell, scenario: Scenario, step: Step) -> int:
    """Run one step; returns 0 or the positive errno of its operation.  Waiting for a
    transition is not done here: the runner waits as the model predicts."""
    match step:
        case Load():
            return _load(shell, step)
        case Unload():
            return _unload(shell, step)
        case Enable(patch=p):
            return _sysfs_write(shell, f"{LIVEPATCH_SYSFS}/{p}/enabled", "1")
        case Disable(patch=p):
            return _sysfs_write(shell, f"{LIVEPATCH_SYSFS}/{p}/enabled", "0")
        case Force(patch=p):
            return _sysfs_write(shell, f"{LIVEPATCH_SYSFS}/{p}/force", "1")
        case SetParam(module=m, param=p, value=v):
            return _sysfs_write(shell, f"/sys/module/{m}/parameters/{p}", v)
        case Park(target=t):
            return _sysfs_write(
                shell, f"/sys/module/{t}/parameters/{blocker_param(scenario, t)}", "Y"
            )
        case Release(target=t):
            return _sysfs_write(
                shell, f"/sys/module/{t}/parameters/{blocker_param(scenario, t)}", "N"
            )
        case SysctlFtrace():
            return _sysctl(shell, step)
        case Call():
            return _call(shell, step)
        case Wait():
            return 0
    raise AssertionError(step)
