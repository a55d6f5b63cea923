"""Recognise kernel crash reports in console output.

The console is the one channel a dying kernel still writes to, so the harness
watches it for every report that means the guest can no longer be trusted: panics,
oopses, BUG and WARNING reports, general protection faults, RCU stalls and hung
tasks.  A report is only recognised on a kernel log line, i.e. right after a printk
timestamp (the guest boots with `printk.time=1`): shell output on the serial console
such as `modprobe: WARNING: ...` must not count as a crash.

`CrashWatcher` works on a stream (chunks as they arrive from QEMU); `find_crash` on
a whole recorded log.  Both keep only the first report: after it the guest is lost.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

# A console line from the kernel: "[   12.345678] " (plus "[    T1] " with
# CONFIG_PRINTK_CALLER).  Not anchored: a kernel line can start right after a shell
# prompt that did not end its line.
_PREFIX = r"\[\s*\d+\.\d+\](?:\[\s*[TC]\d+\])? "

# (kind, what follows the timestamp), most specific first.
_TRIGGERS: tuple[tuple[str, str], ...] = (
    ("panic", r"Kernel panic - not syncing"),
    ("bug", r"kernel BUG at "),
    ("gpf", r"general protection fault"),
    ("oops", r"Oops\b"),  # "Oops: 0002 [#1]" (6.1), "Oops: general protection ..." (6.12)
    ("rcu-stall", r"rcu: INFO: rcu_\w+ (?:self-)?detected stall"),
    ("rcu-stall", r"rcu: INFO: rcu_\w+ detected expedited stalls"),
    ("rcu-stall", r"rcu_\w+ detected stalls"),
    ("hung-task", r"INFO: task .+ blocked for more than \d+ seconds"),
    ("bug", r"BUG: "),  # NULL dereference, page fault, soft lockup, sleeping in atomic...
    ("warning", r"WARNING: "),  # WARN_ON(), lockdep, suspicious RCU usage
)
_TRIGGER_RE = re.compile(
    _PREFIX + "(?:" + "|".join(f"(?P<k{i}>{text})" for i, (_, text) in enumerate(_TRIGGERS)) + ")"
)
# Lines that end a report ("---[ end trace 0000000000000000 ]---", "---[ end Kernel
# panic - not syncing: ... ]---").
# A report often goes on to a worse one ("BUG: kernel NULL pointer dereference" is
# followed by "Oops:", a WARN by a panic with panic_on_warn): the kind reported is
# the worst seen in the report, the line stays the first, most descriptive one.
_SEVERITY = ("warning", "hung-task", "rcu-stall", "bug", "gpf", "oops", "panic")
_END_RE = re.compile(r"---\[ end (?:trace|Kernel panic)")
_CUT_HERE = "------------[ cut here ]------------"

LINES_BEFORE = 2  # context kept before the trigger line (e.g. "cut here", the caller)
MAX_LINES_AFTER = 80  # a report without an end marker is cut here


@dataclass(frozen=True)
class Crash:
    """The first crash report seen on the console."""

    kind: str  # "panic", "oops", "bug", "warning", "gpf", "rcu-stall", "hung-task"
    line: str  # the line that triggered detection, without the timestamp
    excerpt: str  # the report as printed: context, trigger, trace up to its end
    complete: bool  # the report's end was seen (or the console ended)

    @property
    def summary(self) -> str:
        return f"{self.kind}: {self.line}"


def _match_kind(line: str) -> tuple[str, str] | None:
    """(kind, text from the trigger on) if `line` starts a kernel crash report."""
    match = _TRIGGER_RE.search(line)
    if match is None:
        return None
    for i, (kind, _) in enumerate(_TRIGGERS):
        if match.group(f"k{i}") is not None:
            return kind, line[match.start(f"k{i}") :].strip()
    return None  # pragma: no cover - one group always matched


class CrashWatcher:
    """Feed it console text as it arrives; it remembers the first crash report.

    Thread-safe: QEMU's console is drained by a background thread while other
    threads ask whether a crash was seen.  `settled` is set once the report is
    complete, so a caller can wait briefly for the whole trace before reporting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partial = ""
        self._recent: list[str] = []  # last LINES_BEFORE lines before a trigger
        self._report: list[str] = []
        self._kind = ""
        self._line = ""
        self._complete = False
        self.settled = threading.Event()

    def feed(self, text: str) -> None:
        """Consume a chunk of console output (any split, `\\r` allowed)."""
        with self._lock:
            if self._complete:
                return
            lines = (self._partial + text.replace("\r", "")).split("\n")
            self._partial = lines.pop()
            for line in lines:
                self._consume(line)
                if self._complete:
                    break

    def finish(self) -> None:
        """The console ended (QEMU exited): whatever was collected is the report."""
        with self._lock:
            if self._partial:
                self._consume(self._partial)
                self._partial = ""
            self._complete = True
            self.settled.set()

    def _consume(self, line: str) -> None:
        if not self._kind:
            found = _match_kind(line)
            if found is None:
                self._recent = [*self._recent, line][-LINES_BEFORE:]
                return
            self._kind, self._line = found
            self._report = [*self._context_before(), line]
            return
        self._report.append(line)
        worse = _match_kind(line)
        if worse is not None and _SEVERITY.index(worse[0]) > _SEVERITY.index(self._kind):
            self._kind = worse[0]
        if _END_RE.search(line) or len(self._report) > MAX_LINES_AFTER + LINES_BEFORE:
            self._complete = True
            self.settled.set()

    def _context_before(self) -> list[str]:
        """The lines just before the trigger, from a "cut here" line if there is one."""
        for i, line in enumerate(self._recent):
            if _CUT_HERE in line:
                return self._recent[i:]
        return list(self._recent)

    @property
    def crash(self) -> Crash | None:
        with self._lock:
            if not self._kind:
                return None
            return Crash(self._kind, self._line, "\n".join(self._report), self._complete)


def find_crash(text: str) -> Crash | None:
    """The first crash report in a whole console log, or None for a clean log."""
    watcher = CrashWatcher()
    watcher.feed(text)
    watcher.finish()
    return watcher.crash
