"""Prepare a guest for scenarios and clean it between them.

Several scenarios share one guest (a boot costs seconds, a reset a fraction of one).
A reset undoes everything a scenario can leave behind: parked blocker tasks, enabled
or transitioning patches, loaded modules, ftrace_enabled=0.  It is then *verified*:
a guest that is not provably clean (e.g. a forced patch whose module can never be
removed) is reported dirty and the caller boots a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.runner.observe import LIVEPATCH_SYSFS
from harness.runner.shell import Shell

# Upstream's setup_config: livepatch core debug messages on, but not the per-task
# "is running / is sleeping on function" lines, which depend on timing.
DYNDBG_CONTROL = "/sys/kernel/debug/dynamic_debug/control"
PREPARE = (
    f"echo 'file kernel/livepatch/* +p' > {DYNDBG_CONTROL} && "
    f"echo 'func klp_try_switch_task -p' > {DYNDBG_CONTROL} && "
    "sysctl -q kernel.ftrace_enabled=1"
)
LOADED_MODULES = "cut -d' ' -f1 /proc/modules | sort"


@dataclass(frozen=True)
class GuestBaseline:
    """What a clean guest looks like: the modules loaded right after boot."""

    modules: frozenset[str]


def prepare(shell: Shell) -> GuestBaseline:
    """Run once after boot: debug settings, and remember the boot-time modules."""
    shell.run(PREPARE, check=True)
    return GuestBaseline(frozenset(shell.run(LOADED_MODULES, check=True).stdout.split()))


def _extra_modules(shell: Shell, baseline: GuestBaseline) -> list[str]:
    loaded = shell.run(LOADED_MODULES, check=True).stdout.split()
    return [m for m in loaded if m not in baseline.modules]


CLEANUP_SCRIPT = (
    # let every parked blocker return: any bool parameter of a harness module set to Y
    "for m in $(cut -d' ' -f1 /proc/modules); do "
    "[ -d /sys/kernel/debug/klp_harness/$m ] || continue; "
    "for p in /sys/module/$m/parameters/*; do "
    '[ -w "$p" ] && [ "$(cat "$p" 2>/dev/null)" = Y ] && echo N > "$p"; done; done; '
    # disable every patch (reverses a pending enable), newest first
    f"for d in $(ls -r {LIVEPATCH_SYSFS} 2>/dev/null); do "
    f'[ "$(cat {LIVEPATCH_SYSFS}/$d/enabled)" = 1 ] && echo 0 > {LIVEPATCH_SYSFS}/$d/enabled; '
    "done; "
    f'i=0; while [ -n "$(ls {LIVEPATCH_SYSFS} 2>/dev/null)" ] && [ $i -lt 300 ]; do '
    "sleep 0.1; i=$((i+1)); done; "
    "sysctl -q kernel.ftrace_enabled=1; true"
)


def clean(shell: Shell, baseline: GuestBaseline) -> list[str]:
    """Undo a scenario; returns the reasons the guest is still not clean (empty = clean)."""
    shell.run(CLEANUP_SCRIPT, timeout=60)
    for _ in range(3):  # modules may depend on each other: a few passes
        extra = _extra_modules(shell, baseline)
        if not extra:
            break
        shell.run(" ; ".join(f"busybox rmmod {m}" for m in extra) + "; true", timeout=60)
    return verify_clean(shell, baseline)


def verify_clean(shell: Shell, baseline: GuestBaseline) -> list[str]:
    problems = []
    patches = shell.run(f"ls {LIVEPATCH_SYSFS} 2>/dev/null; true").stdout.split()
    if patches:
        problems.append(f"patches still registered: {' '.join(patches)}")
    extra = _extra_modules(shell, baseline)
    if extra:
        problems.append(f"modules still loaded: {' '.join(extra)}")
    ftrace = shell.run("sysctl -n kernel.ftrace_enabled").stdout.strip()
    if ftrace != "1":
        problems.append(f"kernel.ftrace_enabled is {ftrace or '?'}")
    return problems
