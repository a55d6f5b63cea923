"""Prepare a guest for scenarios and clean it between them.

Several scenarios share one guest (a boot costs seconds, a reset a fraction of one).
A reset undoes everything a scenario can leave behind: parked blocker tasks, enabled
or transitioning patches, loaded modules, ftrace_enabled=0.  It is then *verified*:
a guest that is not provably clean (e.g. a forced patch whose module can never be
removed) is reported dirty and the caller boots a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.guest.shell import Shell
from harness.runner.observe import KMSG_DUMP, LIVEPATCH_SYSFS
from harness.runner.waits import RETRY_TRACE_SETUP, idle

# Upstream's setup_config: livepatch core debug messages on, but not the per-task
# "is running / is sleeping on function" lines, which depend on timing.
DYNDBG_CONTROL = "/sys/kernel/debug/dynamic_debug/control"
PREPARE = (
    f"echo 'file kernel/livepatch/* +p' > {DYNDBG_CONTROL} && "
    f"echo 'func klp_try_switch_task -p' > {DYNDBG_CONTROL} && "
    "sysctl -q kernel.ftrace_enabled=1 && "
    f"{RETRY_TRACE_SETUP} && "
    f"{KMSG_DUMP} > /dev/null"  # the boot log is not any scenario's
)


# Taint flags a scenario is expected to raise (kernel/panic.c taint_flags): loading
# an out-of-tree (O), unsigned (E) module, and a livepatch (K).  Any other new flag
# (W: a WARN, D: an oops, B: bad page, L: soft lockup, ...) means the kernel was hurt.
EXPECTED_TAINT = "OEK"
TAINT_LETTERS = "PFSRMBUDAWCIOELKXTN"  # bit n -> letter, as /proc/sys/kernel/tainted


@dataclass(frozen=True)
class GuestBaseline:
    """What a clean guest looks like: the modules loaded right after boot, and the
    kernel's taint then."""

    modules: frozenset[str]
    taint: int = 0

    def to_json(self) -> dict[str, object]:
        return {"modules": sorted(self.modules), "taint": self.taint}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> GuestBaseline:
        modules, taint = data.get("modules"), data.get("taint")
        if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
            raise ValueError("snapshot baseline is malformed")
        if not isinstance(taint, int):
            raise ValueError("snapshot baseline is malformed")
        return cls(frozenset(modules), taint)


def taint_letters(mask: int) -> str:
    return "".join(c for bit, c in enumerate(TAINT_LETTERS) if mask & (1 << bit))


def unexpected_taint(before: int, after: int) -> str:
    """Letters of taint flags raised since `before` that no scenario should raise."""
    return "".join(c for c in taint_letters(after & ~before) if c not in EXPECTED_TAINT)


# One round trip, builtins only: registered patches, loaded modules, ftrace_enabled,
# taint.
STATE_SCRIPT = (
    f"echo @@patches; for d in {LIVEPATCH_SYSFS}/*; do "
    '[ -e "$d" ] && echo "${d##*/}"; done; '
    'echo @@modules; while read -r m _; do echo "$m"; done < /proc/modules; '
    'echo @@ftrace; read -r v < /proc/sys/kernel/ftrace_enabled; echo "$v"; '
    'echo @@taint; read -r v < /proc/sys/kernel/tainted; echo "$v"'
)


@dataclass(frozen=True)
class GuestState:
    patches: tuple[str, ...]
    modules: frozenset[str]
    ftrace_enabled: str
    taint: int


def read_state(shell: Shell) -> GuestState:
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in shell.run(STATE_SCRIPT, check=True).stdout.splitlines():
        if line.startswith("@@"):
            current = sections.setdefault(line[2:], [])
        elif line.strip():
            current.append(line.strip())
    taint = sections.get("taint", ["0"])
    return GuestState(
        tuple(sections.get("patches", [])),
        frozenset(sections.get("modules", [])),
        "".join(sections.get("ftrace", [])),
        int(taint[0]) if taint and taint[0].isdigit() else -1,
    )


def prepare(shell: Shell) -> GuestBaseline:
    """Run once after boot: debug settings, and remember the boot-time modules."""
    shell.run(PREPARE, check=True)
    state = read_state(shell)
    return GuestBaseline(state.modules, state.taint)


def _extra_modules(shell: Shell, baseline: GuestBaseline) -> list[str]:
    return sorted(read_state(shell).modules - baseline.modules)


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
    f"{idle(0.1)}; i=$((i+1)); done; "
    # kill what `spawn` started (harness/runner/actions.py)
    'for f in /run/klp-procs-*; do [ -e "$f" ] || continue; '
    'for p in $(cat "$f"); do kill -9 $p; done 2>/dev/null; rm -f "$f"; done; '
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
    """Reasons the guest is not as clean as right after boot (empty: clean)."""
    state = read_state(shell)
    problems = []
    if state.patches:
        problems.append(f"patches still registered: {' '.join(state.patches)}")
    extra = sorted(state.modules - baseline.modules)
    if extra:
        problems.append(f"modules still loaded: {' '.join(extra)}")
    if state.ftrace_enabled != "1":
        problems.append(f"kernel.ftrace_enabled is {state.ftrace_enabled or '?'}")
    hurt = unexpected_taint(baseline.taint, state.taint)
    if hurt:
        problems.append(f"kernel taint raised: {hurt}")
    return problems
