"""Crash detection on console logs recorded from real guests (tests/data/console-*.log).

The logs were captured with the harness itself: a clean boot with user text that
looks like kernel reports on the serial console, `echo c > /proc/sysrq-trigger`, and
a throwaway module that provokes WARN_ON(1), a NULL dereference, a non-canonical
address access, BUG(), an 8 s msleep (hung_task_timeout_secs=2) and an 8 s mdelay
with preemption off (rcu_cpu_stall_timeout=3) in its init function.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.guest.crash import MAX_LINES_AFTER, CrashWatcher, find_crash

DATA = Path(__file__).parent / "data"


def log(name: str) -> str:
    return (DATA / f"console-{name}.log").read_text()


@pytest.mark.parametrize("name", ["debian-6.1-clean", "debian-6.12-clean"])
def test_clean_boot_has_no_crash(name: str) -> None:
    assert find_crash(log(name)) is None


def test_user_text_on_the_console_is_not_a_report() -> None:
    text = log("debian-6.1-clean")
    assert "WARNING: userspace text" in text and "BUG: also not" in text
    assert find_crash(text) is None


# (log, kind, start of the trigger line, text the excerpt must contain)
CASES = [
    ("debian-6.1-panic", "panic", "Kernel panic - not syncing: sysrq triggered crash",
     "sysrq_handle_crash"),
    ("debian-6.12-panic", "panic", "Kernel panic - not syncing: sysrq triggered crash",
     "sysrq_handle_crash"),
    ("debian-6.1-oops", "oops", "BUG: kernel NULL pointer dereference", "Oops: 0002 [#1]"),
    ("debian-6.12-oops", "oops", "BUG: kernel NULL pointer dereference", "Oops: Oops: 0002"),
    ("debian-6.1-warn", "warning", "WARNING: CPU: 0 PID:", "crashmod_init"),
    ("debian-6.12-warn", "warning", "WARNING: CPU: 0 PID:", "crashmod_init"),
    ("debian-6.1-gpf", "gpf", "general protection fault, probably for non-canonical",
     "crashmod_init"),
    ("debian-6.1-bug", "bug", "kernel BUG at ", "invalid opcode"),
    ("debian-6.1-hang", "hung-task", "INFO: task insmod:", "hung_task_timeout_secs"),
    ("debian-6.1-stall", "rcu-stall", "rcu: INFO: rcu_preempt detected stalls",
     "crashmod_init"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "kind", "line", "in_excerpt"), CASES)
def test_recorded_crash_is_found(name: str, kind: str, line: str, in_excerpt: str) -> None:
    crash = find_crash(log(name))
    assert crash is not None
    assert crash.kind == kind
    assert crash.line.startswith(line)
    assert in_excerpt in crash.excerpt
    assert crash.line in crash.excerpt
    assert crash.complete
    assert len(crash.excerpt.splitlines()) <= MAX_LINES_AFTER + 3


@pytest.mark.parametrize("name", ["debian-6.1-warn", "debian-6.12-warn"])
def test_warn_excerpt_starts_at_cut_here_and_ends_at_end_trace(name: str) -> None:
    crash = find_crash(log(name))
    assert crash is not None
    lines = crash.excerpt.splitlines()
    assert "------------[ cut here ]------------" in lines[0]
    assert "---[ end trace" in lines[-1]


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096])
def test_streaming_in_any_chunks_matches_whole_log(chunk: int) -> None:
    text = log("debian-6.1-oops").replace("\n", "\r\r\n")  # as the serial port sends it
    watcher = CrashWatcher()
    for i in range(0, len(text), chunk):
        watcher.feed(text[i : i + chunk])
    streamed = watcher.crash
    whole = find_crash(log("debian-6.1-oops"))
    assert streamed is not None and whole is not None
    assert streamed.excerpt == whole.excerpt
    assert streamed.complete and watcher.settled.is_set()


def test_report_is_incomplete_until_its_end_or_the_console_ends() -> None:
    text = log("debian-6.1-warn")
    cut = text.index("---[ end trace")
    watcher = CrashWatcher()
    watcher.feed(text[:cut])
    crash = watcher.crash
    assert crash is not None and not crash.complete
    assert not watcher.settled.is_set()
    watcher.finish()
    assert watcher.settled.is_set()
    crash = watcher.crash
    assert crash is not None and crash.complete


def test_only_the_first_report_is_kept() -> None:
    watcher = CrashWatcher()
    watcher.feed(log("debian-6.1-warn"))
    watcher.feed(log("debian-6.1-panic"))
    crash = watcher.crash
    assert crash is not None and crash.kind == "warning"


def test_kernel_line_after_an_unfinished_prompt_is_recognised() -> None:
    text = "klp-guest:/# [   12.345678] BUG: scheduling while atomic: insmod/99/0x00000002\n"
    crash = find_crash(text)
    assert crash is not None and crash.kind == "bug"
    assert crash.line == "BUG: scheduling while atomic: insmod/99/0x00000002"
