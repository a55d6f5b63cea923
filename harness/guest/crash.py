"""Recognise kernel crash reports in console output.

The console is the one channel a dying kernel still writes to, so the harness
watches it for every report that means the guest can no longer be trusted.  A report
is only recognised on a kernel log line, i.e. right after a printk timestamp (the
guest boots with `printk.time=1`): shell output on the serial console such as
`modprobe: WARNING: ...` must not count as a crash.

Reports come in two weights, and callers need to tell them apart:
- **fatal** (`Crash.fatal`): the kernel panicked, or died inside a task (an oops:
  page fault, general protection fault, `kernel BUG at`, `invalid opcode` and the
  other die() traps, a hard lockup).  The guest is dead or holds whatever locks the
  dead task held: nothing it says afterwards can be trusted.
- **non-fatal**: the kernel noticed something wrong and went on: `WARNING:`, SLUB
  debug reports (`BUG kmalloc-8 (...): Object already free`), KASAN, KFENCE and UBSAN
  reports, `BUG: scheduling while atomic` and other `BUG: ` notices, soft lockups,
  RCU stalls and hung tasks.  The scenario has failed, but the guest still answers.

Formats covered (recorded from the profiles' kernels in tests/data/): 6.1 prints a
die() header as `<trap>: 0000 [#1] ...` (`invalid opcode`, `general protection
fault, ...`, `Oops`), 6.12 as `Oops: <trap>: 0000 [#1] ...`.

`CrashWatcher` works on a stream (chunks as they arrive from QEMU); `find_crash` on
a whole recorded log.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

# A console line from the kernel: "[   12.345678] " (plus "[    T1] " with
# CONFIG_PRINTK_CALLER).  Not anchored: a kernel line can start right after a shell
# prompt that did not end its line.
_PREFIX = re.compile(r"\[\s*\d+\.\d+\](?:\[\s*[TC]\d+\])? ")

_END_TRACE = r"---\[ end (?:trace|Kernel panic)"
# With panic=-1 the kernel reboots right after "Kernel Offset:", before its end line.
_END_PANIC = r"---\[ end Kernel panic|Kernel Offset: |Rebooting in "
_END_TASK = r"\s*</TASK>"  # the end of a stack dump (dump_stack(), sched_show_task())
_END_RULE = r"={40,}$"  # KASAN, KFENCE and UBSAN frame their reports with these
# Stalls and lockups dump other tasks' stacks first; theirs has the registers.
_KERNEL_REGS = r"RIP: 0010:"


@dataclass(frozen=True)
class _Trigger:
    kind: str
    fatal: bool
    start: re.Pattern[str]  # matched at the start of the message (after the timestamp)
    end: re.Pattern[str]  # a line that ends this kind of report...
    after: re.Pattern[str] | None  # ...once a line matching this was seen


def _t(
    kind: str, fatal: bool, start: str, end: str = _END_TRACE, after: str | None = None
) -> _Trigger:
    return _Trigger(
        kind, fatal, re.compile(start), re.compile(end), re.compile(after) if after else None
    )


# Most specific first: the first trigger that matches a line decides its kind.
_TRIGGERS: tuple[_Trigger, ...] = (
    _t("panic", True, r"Kernel panic - not syncing", _END_PANIC),
    _t("gpf", True, r"(?:Oops: )?general protection fault"),
    _t("bug", True, r"kernel BUG at "),
    # Page faults print this line, then the die() header ("Oops: 0002 [#1]").
    _t("oops", True, r"BUG: (?:unable to handle|kernel NULL pointer dereference)"),
    _t("oops", True, r"Oops\b"),  # "Oops: 0002 [#1]" (6.1), "Oops: invalid opcode: ..." (6.12)
    # 6.1's die() header for the other traps: "invalid opcode: 0000 [#1] PREEMPT SMP".
    _t("oops", True, r"[^\[\]]*: [0-9a-f]{4} \[#\d+\]"),
    _t("lockup", True, r"(?:NMI watchdog: )?Watchdog detected hard LOCKUP"),
    _t("kasan", False, r"BUG: KASAN: ", _END_RULE),
    _t("kfence", False, r"BUG: KFENCE: ", _END_RULE),
    _t("ubsan", False, r"UBSAN: ", _END_RULE),
    # SLUB debug (slub_debug=FZPU): "BUG kmalloc-8 (Tainted: G  OE ): Object already
    # free", a dump of the object and a stack; "FIX kmalloc-8: ..." says what it did.
    _t("slub", False, r"BUG [\w.:-]+ \([^()]*\): ", r"FIX [\w.:-]+: "),
    _t("lockup", False, r"(?:watchdog: )?BUG: soft lockup", _END_TASK, _KERNEL_REGS),
    _t("rcu-stall", False, r"rcu: INFO: rcu_\w+ (?:self-)?detected stall", _END_TASK, _KERNEL_REGS),
    _t("rcu-stall", False, r"rcu: INFO: rcu_\w+ detected expedited", _END_TASK, _KERNEL_REGS),
    _t("rcu-stall", False, r"rcu_\w+ detected stalls", _END_TASK, _KERNEL_REGS),
    _t("hung-task", False, r"INFO: task .+ blocked for more than \d+ seconds", _END_TASK),
    # Sleeping in atomic context, bad page state, workqueue lockup...: a stack dump.
    _t("bug", False, r"BUG: ", _END_TASK),
    _t("warning", False, r"WARNING: "),  # WARN_ON(), lockdep, suspicious RCU usage
)
# A report often goes on to a worse one (a WARN to a panic with panic_on_warn): the
# kind reported is the worst seen in the report, the line stays the first, most
# descriptive one.  Only a fatal trigger or a panic can raise the stakes.
_RANK = {False: 0, True: 1}
_CUT_HERE = "------------[ cut here ]------------"
_KERNEL_RIP = re.compile(r"RIP: 0010:(\S+(?: \[\w+\])?)")

# Reports of time the kernel counted as stuck: a host that did not run the guest for
# that long makes the guest's clock jump and the kernel print them, falsely
# (harness.guest.stall).  HZ is 250 on every profile (Debian's CONFIG_HZ_250).
STALL_KINDS = ("lockup", "rcu-stall", "hung-task")
HZ = 250
_STUCK = (
    (re.compile(r"soft lockup - CPU#\d+ stuck for (\d+)s"), 1.0),
    (re.compile(r"\bt=(\d+) jiffies"), 1.0 / HZ),
    (re.compile(r"blocked for more than (\d+) seconds"), 1.0),
)
# When the report does not say: watchdog_thresh x 2, CONFIG_RCU_CPU_STALL_TIMEOUT, and
# hung_task_timeout_secs of Debian's kernels.
STALL_DEFAULTS = {"lockup": 20.0, "rcu-stall": 21.0, "hung-task": 120.0}

LINES_BEFORE = 2  # context kept before the trigger line (e.g. "cut here", the caller)
MAX_LINES_AFTER = 120  # a report without an end marker is cut here (SLUB's run ~80)
MAX_REPORTS = 8  # reports kept per console; after a fatal one nothing else matters


@dataclass(frozen=True)
class Crash:
    """One kernel report seen on the console."""

    kind: str  # "panic", "oops", "gpf", "bug", "lockup", "slub", "kasan", "kfence",
    # "ubsan", "rcu-stall", "hung-task", "warning"
    line: str  # the line that triggered detection, without the timestamp
    excerpt: str  # the report as printed: context, trigger, trace up to its end
    complete: bool  # the report's end was seen (or the console ended)
    fatal: bool = True  # the kernel died, or died inside a task: the guest is lost

    @property
    def where(self) -> str:
        """The kernel function the report points at (its first kernel-mode `RIP:`),
        or "" (a panic from sysrq, a SLUB report: no register dump)."""
        match = _KERNEL_RIP.search(self.excerpt)
        return match.group(1) if match else ""

    @property
    def stuck_seconds(self) -> float | None:
        """How long the kernel says it was stuck, for a lockup, an RCU stall or a hung
        task ("stuck for 24s!", "t=5252 jiffies", "blocked for more than 120
        seconds"); None for other reports."""
        if self.kind not in STALL_KINDS or self.fatal:
            return None
        for pattern, scale in _STUCK:
            match = pattern.search(self.excerpt)
            if match:
                return int(match.group(1)) * scale
        return STALL_DEFAULTS[self.kind]

    @property
    def summary(self) -> str:
        """One line: kind, trigger line and, if the line does not say it, where."""
        where = self.where
        at = f" (RIP {where})" if where and where.split("+")[0] not in self.line else ""
        return f"{self.kind}: {self.line}{at}"


def _rank(kind: str, fatal: bool) -> int:
    return 2 if kind == "panic" else _RANK[fatal]


def _match(line: str) -> tuple[_Trigger, str] | None:
    """(trigger, text from the trigger on) if `line` starts a kernel report."""
    prefix = _PREFIX.search(line)
    if prefix is None:
        return None
    message = line[prefix.end() :]
    for trigger in _TRIGGERS:
        if trigger.start.match(message):
            return trigger, message.strip()
    return None


class _Report:
    """A report being collected, line by line."""

    def __init__(self, trigger: _Trigger, line: str, context: list[str], first: str) -> None:
        self.trigger = trigger
        self.kind = trigger.kind
        self.fatal = trigger.fatal
        self.line = line
        self.lines = [*context, first]
        self.complete = False
        self.armed = trigger.after is None  # the end marker counts from now on

    def add(self, line: str) -> None:
        self.lines.append(line)
        worse = _match(line)
        if worse is not None:
            trigger = worse[0]
            if _rank(trigger.kind, trigger.fatal) > _rank(self.kind, self.fatal):
                self.kind, self.fatal = trigger.kind, trigger.fatal
                self.trigger = trigger
                self.armed = trigger.after is None
        message = line[m.end() :] if (m := _PREFIX.search(line)) else line
        if not self.armed:
            self.armed = bool(self.trigger.after and self.trigger.after.match(message))
        elif self.trigger.end.match(message):
            self.complete = True
        if len(self.lines) > MAX_LINES_AFTER + LINES_BEFORE:
            self.complete = True

    def crash(self) -> Crash:
        return Crash(self.kind, self.line, "\n".join(self.lines), self.complete, self.fatal)


class CrashWatcher:
    """Feed it console text as it arrives; it collects the kernel's reports.

    Thread-safe: QEMU's console is drained by a background thread while other
    threads ask whether a crash was seen.  `settled` is set once the report that
    `crash` returns is complete, so a caller can wait briefly for the whole trace
    before reporting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partial = ""
        self._recent: list[str] = []  # last LINES_BEFORE lines before a trigger
        self._reports: list[_Report] = []
        self._ended = False
        self.settled = threading.Event()

    def feed(self, text: str) -> None:
        """Consume a chunk of console output (any split, `\\r` allowed)."""
        with self._lock:
            if self._ended:
                return
            lines = (self._partial + text.replace("\r", "")).split("\n")
            self._partial = lines.pop()
            for line in lines:
                self._consume(line)
            self._update_settled()

    def finish(self) -> None:
        """The console ended (QEMU exited): whatever was collected is the report."""
        with self._lock:
            if self._partial:
                self._consume(self._partial)
                self._partial = ""
            for report in self._reports:
                report.complete = True
            self._ended = True
            self.settled.set()

    def _consume(self, line: str) -> None:
        current = self._reports[-1] if self._reports else None
        if current is not None and not current.complete:
            current.add(line)
            return
        found = _match(line) if len(self._reports) < MAX_REPORTS else None
        if found is None or self._done():
            self._recent = [*self._recent, line][-LINES_BEFORE:]
            return
        trigger, text = found
        self._reports.append(_Report(trigger, text, self._context_before(), line))
        self._recent = []

    def _done(self) -> bool:
        """After a complete fatal report nothing later can change the verdict."""
        return any(r.fatal and r.complete for r in self._reports)

    def _chosen(self) -> _Report | None:
        """The first fatal report, else the first report."""
        for report in self._reports:
            if report.fatal:
                return report
        return self._reports[0] if self._reports else None

    def _update_settled(self) -> None:
        chosen = self._chosen()
        if chosen is not None and chosen.complete:
            self.settled.set()
        else:
            self.settled.clear()

    def _context_before(self) -> list[str]:
        """The lines just before the trigger, from a "cut here" line if there is one."""
        for i, line in enumerate(self._recent):
            if _CUT_HERE in line:
                return self._recent[i:]
        return list(self._recent)

    @property
    def crash(self) -> Crash | None:
        """The report that matters most: the first fatal one, else the first one."""
        with self._lock:
            chosen = self._chosen()
            return chosen.crash() if chosen is not None else None

    @property
    def fatal(self) -> Crash | None:
        """The first fatal report, or None while the guest is only reported unwell."""
        with self._lock:
            return next((r.crash() for r in self._reports if r.fatal), None)

    @property
    def reports(self) -> list[Crash]:
        """Every report seen, in order (at most MAX_REPORTS)."""
        with self._lock:
            return [r.crash() for r in self._reports]


def find_crash(text: str) -> Crash | None:
    """The report that matters most in a whole console log, or None for a clean log."""
    watcher = CrashWatcher()
    watcher.feed(text)
    watcher.finish()
    return watcher.crash


def find_reports(text: str) -> list[Crash]:
    """Every report in a whole console log, in order."""
    watcher = CrashWatcher()
    watcher.feed(text)
    watcher.finish()
    return watcher.reports
