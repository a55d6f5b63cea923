"""Observe the guest on the same terms the model predicts (see harness/outcome/record.py).

Every observation is part of one shell round trip whose output is parsed here, so
parsing is tested on recorded output without a VM.  The kernel log is read with
syslog(2) (not scraped from the console, where messages interleave with the shell and
depend on the console log level).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.guest.crash import Crash
from harness.guest.shell import Shell
from harness.scenario.types import VMLINUX, VMLINUX_FUNCS

LIVEPATCH_SYSFS = "/sys/kernel/livepatch"
DEBUGFS_FUNCS = "/sys/kernel/debug/klp_harness"
WRITE_ONLY = "<write-only>"
PATCHED_RE = re.compile(r"^(\w+): this has been live patched$", re.MULTILINE)

# The records logged since the last dump, and no others: syslog(2)'s READ_CLEAR
# (`dmesg -c`) returns what was logged since the last clear, then clears.  busybox's
# dmesg because it is static: under TCG a dynamically linked program costs several
# times as much to start, and this runs after every step.  (Clearing concerns syslog
# readers only; /dev/kmsg readers are not affected.)
KMSG_DUMP = "busybox dmesg -c -r"
KMSG_PEEK = "busybox dmesg -r"  # the same, leaving the buffer as it is
_SYSLOG_LINE = re.compile(r"^<(\d+)>(?:\[\s*([0-9.]+)\] ?)?(.*)$")


@dataclass(frozen=True)
class KmsgRecord:
    seq: int  # position in the guest's log as the harness read it
    level: int
    text: str
    seconds: float | None = None  # the kernel's timestamp: seconds since boot

    @property
    def line(self) -> str:
        """As dmesg prints it, with its time when the kernel gave one."""
        return self.text if self.seconds is None else f"[{self.seconds:12.6f}] {self.text}"


def parse_kmsg(raw: str, first_seq: int = 0) -> list[KmsgRecord]:
    """Parse `dmesg -r` output (`<prio>[ seconds] text`, one line per record and per
    line of a multi-line record); records are numbered from `first_seq`."""
    records: list[KmsgRecord] = []
    for line in raw.splitlines():
        match = _SYSLOG_LINE.match(line)
        if match is None:
            continue
        level = int(match.group(1)) & 7
        seconds = float(match.group(2)) if match.group(2) else None
        records.append(KmsgRecord(first_seq + len(records), level, match.group(3), seconds))
    return records


# x86's module relocation errors (arch/x86/kernel/module.c, pr_fmt "module: "), which
# name no module: what refuses a livepatch's klp relocations (harness/model/kernel/relocs.py)
ARCH_MODULES = "module: x86/modules: "


def filter_log(texts: Iterable[str], module_names: Sequence[str]) -> list[str]:
    """Upstream's check_result filter, generalised: upstream keeps lines containing
    `livepatch:` or `test_klp` (the prefix of all its module names), so its own
    `% modprobe test_klp_...` markers survive; we keep lines naming a scenario module
    as a whole word, and x86's module relocation errors.  Taint lines are dropped."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, module_names)) + r")\b")
    kept = []
    for text in texts:
        if "tainting kernel" in text or "taints kernel" in text:
            continue
        if (
            "livepatch:" in text
            or text.startswith(ARCH_MODULES)
            or (module_names and pattern.search(text))
        ):
            kept.append(text)
    return kept


def drop_lines_of(texts: Sequence[str], modules: Sequence[str]) -> list[str]:
    """Without the lines a module logs under its own prefix (`<module>: ...`): a
    module file's own messages, which the scenario did not declare (the model cannot
    know what its code prints, nor when a timer of it fires)."""
    prefixes = tuple(f"{name}: " for name in modules)
    return [text for text in texts if not (prefixes and text.startswith(prefixes))]


_POINTER_RE = re.compile(r"\b[0-9a-f]{16}\b")
_RELOC_SECTION_RE = re.compile(r"\bfor sec \d+, idx ")
RELOC_SECTION = "for sec SEC, idx "


def normalize_reloc_sections(lines: Sequence[str]) -> list[str]:
    """x86's relocation errors name the relocation section's index in the patch's
    .ko (7.3 arch/x86/kernel/module.c:151-153, "sec %u, idx %u"), which the compiler's
    section layout decides, not the scenario: it reads as SEC, as an address reads
    as PTRn.  The entry's index and everything else on the line stay compared."""
    return [
        _RELOC_SECTION_RE.sub(RELOC_SECTION, line) if line.startswith(ARCH_MODULES) else line
        for line in lines
    ]


def normalize_pointers(lines: Sequence[str]) -> list[str]:
    """Rewrite %px pointers to PTRn in first-seen order, NULL as PTR0, so shadow
    variable transcripts are comparable across boots."""
    ids: dict[str, int] = {"0" * 16: 0}

    def replace(match: re.Match[str]) -> str:
        value = match.group(0)
        if value not in ids:
            ids[value] = len(ids)
        return f"PTR{ids[value]}"

    return [_POINTER_RE.sub(replace, line) for line in lines]


class KernelLog:
    """Reads new kernel log records since a remembered sequence number."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.last_seq = -1
        self.all_records: list[KmsgRecord] = []

    def read_new(self) -> list[KmsgRecord]:
        return self.feed(self.shell.run(KMSG_DUMP).stdout)

    def feed(self, raw: str) -> list[KmsgRecord]:
        """Records of a dump (all new: each dump clears what it returned)."""
        new = parse_kmsg(raw, self.last_seq + 1)
        if new:
            self.last_seq = new[-1].seq
        self.all_records.extend(new)
        return new

    def skip_to_end(self) -> None:
        """Forget everything logged so far (called before a scenario starts)."""
        self.read_new()
        self.all_records.clear()


# ---- one snapshot of everything compared --------------------------------------------
#
# Under TCG every exec in the guest costs ~35 ms, so the snapshot is one script made of
# shell builtins (`read` instead of cat/grep/stat) plus a single dd for the log.

_SECTIONS = (
    *("action", "retries", "kmsg", "sysfs", "modules", "impls", "actors", "taint", "trigger"),
    *("late", "uptime"),
)
# The guest's clock (seconds since boot, the kernel log's) when a step's script starts
# and ends: two reads of a proc file by the shell's builtin, no program started.
UPTIME_BEFORE = "read -r __up0 __x < /proc/uptime"
UPTIME_AFTER = 'read -r __up1 __x < /proc/uptime; echo @@uptime; echo "$__up0 $__up1"'


def parse_uptime(out: str) -> tuple[float | None, float | None]:
    """UPTIME_AFTER's section: the guest's seconds since boot at the step's start
    and end (None where it is missing)."""
    words = out.split()
    try:
        return float(words[0]), float(words[1])
    except (IndexError, ValueError):
        return None, None


TAINTED = "/proc/sys/kernel/tainted"


def func_source(obj: str, func: str) -> str:
    """The file whose read calls `obj:func` in the guest."""
    if obj == VMLINUX:
        return VMLINUX_FUNCS[func]
    return f"{DEBUGFS_FUNCS}/{obj}/{func}"


def snapshot_script(
    module_names: Sequence[str],
    funcs: Sequence[tuple[str, str]],
    spinners: Sequence[str] = (),
    processes: Sequence[str] = (),
    late: bool = False,
) -> str:
    """Kernel log, sysfs tree, module refcounts, function implementations and the
    kernel's taint (so a step that hurt the kernel is named).  `late`: the log again at
    the end, without clearing it, for a WARN the reads of the functions themselves
    cause (a predicted kernel report: the next step's dump holds those lines too).

    A sysfs file whose read fails is write-only (`force` has no show method and reads
    return EIO).  A function's implementation is the first line its read prints;
    objects whose module is not loaded have no file and are skipped."""
    lp = LIVEPATCH_SYSFS
    parts = [
        f"echo @@kmsg; {KMSG_DUMP}",
        f"echo @@sysfs; for f in {lp}/*/* {lp}/*/*/* {lp}/*/*/*/*; do "
        '[ -f "$f" ] || continue; '
        'if read -r v < "$f" 2>/dev/null; then echo "$f=$v"; else echo "$f=<write-only>"; fi; '
        "done",
        "echo @@modules",
    ]
    if module_names:
        names = " ".join(shlex.quote(n) for n in module_names)
        parts.append(
            f"for m in {names}; do [ -e /sys/module/$m/refcnt ] && "
            'read -r r < /sys/module/$m/refcnt && echo "$m=$r"; done'
        )
    parts.append("echo @@impls")
    for obj, func in funcs:
        src = func_source(obj, func)
        parts.append(f'[ -e {src} ] && read -r l < {src} && echo "{obj}:{func}=$l"')
    parts.append("echo @@actors")
    for target in spinners:  # `<pid> <what it returned>` or `stopped`, then its state
        src = f"{DEBUGFS_FUNCS}/{target}/spinner"
        parts.append(
            f"[ -e {src} ] && read -r __p __r < {src} && {{ __s=; "
            '[ "$__p" = stopped ] || read -r __s < /proc/$__p/patch_state; '
            f'echo "{target}:spinner=$__p|$__s|$__r"; }}'
        )
    for group in processes:  # `procs|<patch_state of each>`, or `procs|stopped`
        pids = f"/run/klp-procs-{group}"
        parts.append(
            f"if [ -e {pids} ]; then __v=; while read -r __p; do "
            '{ read -r __s < /proc/$__p/patch_state; } 2>/dev/null && __v="$__v $__s"; '
            f'done < {pids}; echo "{group}=procs|$__v"; else echo "{group}=procs|stopped"; fi'
        )
    if late:
        parts.append(f"echo @@late; {KMSG_PEEK}")
    parts.append(f'echo @@taint; read -r t < {TAINTED}; echo "$t"')
    return "; ".join(parts)


def parse_actors(out: str) -> dict[str, str]:
    """`<target>:spinner=<pid>|<patch_state>|<returned>` lines, on the model's terms
    (harness/outcome/record.py): `stopped`, or `patch_state=N ran=IMPL`."""
    actors = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        pid, _, rest = value.partition("|")
        if pid == "procs":  # a [[processes]] group: every process's patch_state
            states = rest.split()
            if rest == "stopped":
                actors[key] = "stopped"
            else:
                actors[key] = f"patch_state={','.join(sorted(set(states)))} count={len(states)}"
            continue
        state, _, returned = rest.partition("|")
        if pid == "stopped":
            actors[key] = "stopped"
            continue
        ran = "none" if returned == "none" else impl_from_output(returned)
        actors[key] = f"patch_state={state} ran={ran}"
    return actors


def split_sections(out: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {name: [] for name in _SECTIONS}
    current: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("@@") and line[2:] in sections:
            current = sections[line[2:]]
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def parse_sysfs(out: str) -> dict[str, str]:
    values: dict[str, str] = {}
    prefix = LIVEPATCH_SYSFS + "/"
    for line in out.splitlines():
        path, sep, value = line.partition("=")
        if sep and path.startswith(prefix):
            values[path[len(prefix) :]] = value.strip()
    return values


def parse_taint(out: str) -> int:
    """The taint bitmask; -1 when it could not be read (the health check then reads it
    itself)."""
    try:
        return int(out.strip())
    except ValueError:
        return -1


def parse_modules(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def impl_from_output(out: str) -> str:
    """ "orig", or the patch whose implementation produced this read."""
    match = PATCHED_RE.search(out)
    return match.group(1) if match else "orig"


def parse_impls(out: str) -> dict[str, str]:
    impls = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            impls[key] = impl_from_output(value)
    return impls


# "WARNING: CPU: 0 PID: 155 at FILE:LINE FUNC+off/size" (6.1, 6.12) and
# "WARNING: FILE:LINE at FUNC+off/size, CPU#0: comm/pid" (7.3)
_WARNING = re.compile(
    r"WARNING: (?:CPU: \d+ PID: \d+ at (?P<file>\S+) (?P<func>[\w.]+)"
    r"|(?P<file2>\S+) at (?P<func2>[\w.]+))"
)


def report_in(texts: Sequence[str]) -> str:
    """The first `WARNING:` among a step's kernel log records, on the model's terms
    (as `report_of`), or "".  The log has it as soon as the WARN printed; the serial
    console may show it only after the step's command returned."""
    for text in texts:
        match = _WARNING.match(text)
        if match:
            return _warning_text(match)
    return ""


def _warning_text(match: re.Match[str]) -> str:
    where = match.group("file") or match.group("file2")
    func = match.group("func") or match.group("func2")
    return f"warning at {where} {func}"


def report_of(crash: Crash) -> str:
    """A report the kernel survived, on the model's terms (record.py `report`):
    `warning at FILE:LINE FUNCTION`, without CPU, PID and offset; other kinds as the
    watcher names them."""
    match = _WARNING.search(crash.line)
    if crash.kind == "warning" and match:
        return _warning_text(match)
    return crash.summary
