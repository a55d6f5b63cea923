"""Crash detection on console logs recorded from real guests (tests/data/console-*.log).

The logs were captured with the harness itself: a clean boot with user text that
looks like kernel reports on the serial console, `echo c > /proc/sysrq-trigger`, and
tests/data/crashmod (see record.py there), a module that provokes WARN_ON(1), a NULL
dereference, a non-canonical address access, BUG(), a bare `ud2`, a write to
read-only data, a double kfree() and a redzone overwrite (slub_debug=FZPU), sleeping
with preemption off, an 8 s msleep (hung_task_timeout_secs=2) and long mdelays with
preemption off (rcu_cpu_stall_timeout=3, watchdog_thresh=1) in its init function.
Formats no Debian kernel can produce (KASAN, KFENCE, UBSAN, hard lockups) are
written out from the kernel's format strings.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.guest.crash import MAX_LINES_AFTER, CrashWatcher, find_crash, find_reports

DATA = Path(__file__).parents[1] / "data"


def log(name: str) -> str:
    return (DATA / f"console-{name}.log").read_text()


@pytest.mark.parametrize("name", ["debian-6.1-clean", "debian-6.12-clean"])
def test_clean_boot_has_no_crash(name: str) -> None:
    assert find_crash(log(name)) is None


def test_user_text_on_the_console_is_not_a_report() -> None:
    text = log("debian-6.1-clean")
    assert "WARNING: userspace text" in text and "BUG: also not" in text
    assert find_crash(text) is None


# (log, kind, start of the trigger line, text the excerpt must contain, fatal)
CASES = [
    ("debian-6.1-panic", "panic", "Kernel panic - not syncing: sysrq triggered crash",
     "sysrq_handle_crash", True),
    ("debian-6.12-panic", "panic", "Kernel panic - not syncing: sysrq triggered crash",
     "sysrq_handle_crash", True),
    ("debian-6.1-oops", "oops", "BUG: kernel NULL pointer dereference", "Oops: 0002 [#1]", True),
    ("debian-6.12-oops", "oops", "BUG: kernel NULL pointer dereference", "Oops: Oops: 0002",
     True),
    ("debian-6.1-ro-write", "oops", "BUG: unable to handle page fault for address",
     "Oops: 0003 [#1]", True),
    ("debian-6.1-oops-panic", "oops", "BUG: kernel NULL pointer dereference", "end trace", True),
    ("debian-6.1-ud2", "oops", "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
     "RIP: 0010:crashmod_init", True),
    ("debian-6.12-ud2", "oops", "Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
     "RIP: 0010:crashmod_init", True),
    ("debian-6.1-gpf", "gpf", "general protection fault, probably for non-canonical",
     "crashmod_init", True),
    ("debian-6.12-gpf", "gpf", "Oops: general protection fault, probably for non-canonical",
     "crashmod_init", True),
    ("debian-6.1-bug", "bug", "kernel BUG at ", "invalid opcode", True),
    ("debian-6.12-bug", "bug", "kernel BUG at ", "Oops: invalid opcode", True),
    ("debian-6.1-warn", "warning", "WARNING: CPU: 0 PID:", "crashmod_init", False),
    ("debian-6.12-warn", "warning", "WARNING: CPU: 0 PID:", "crashmod_init", False),
    ("debian-6.1-double-free", "slub", "BUG kmalloc-8 (Tainted: G", "FIX kmalloc-8: Object",
     False),
    ("debian-6.12-double-free", "slub", "BUG kmalloc-8 (Tainted: G", "FIX kmalloc-8: Object",
     False),
    ("debian-6.1-redzone", "slub", "BUG kmalloc-8 (Tainted: G", "FIX kmalloc-8: Restoring",
     False),
    ("debian-6.12-redzone", "slub", "BUG kmalloc-8 (Tainted: G", "FIX kmalloc-8: Restoring",
     False),
    ("debian-6.1-atomic-sleep", "bug", "BUG: scheduling while atomic: insmod/", "msleep",
     False),
    ("debian-6.1-soft-lockup", "lockup", "watchdog: BUG: soft lockup - CPU#0 stuck for",
     "crashmod_init", False),
    ("debian-6.12-soft-lockup", "lockup", "watchdog: BUG: soft lockup - CPU#0 stuck for",
     "crashmod_init", False),
    # 7.3 (PREEMPT_LAZY: no "PREEMPT" in the Oops line; WARN names file:line first)
    ("debian-7.3-oops", "oops", "BUG: kernel NULL pointer dereference", "Oops: Oops: 0002",
     True),
    ("debian-7.3-ud2", "oops", "Oops: invalid opcode: 0000 [#1] SMP NOPTI",
     "RIP: 0010:crashmod_init", True),
    ("debian-7.3-gpf", "gpf", "Oops: general protection fault, probably for non-canonical",
     "crashmod_init", True),
    ("debian-7.3-bug", "bug", "kernel BUG at crashmod.c:", "Oops: invalid opcode", True),
    ("debian-7.3-warn", "warning", "WARNING: crashmod.c:52 at crashmod_init", "crashmod_init",
     False),
    ("debian-7.3-double-free", "slub", "BUG kmalloc-8 (Tainted: G", "FIX kmalloc-8: Object",
     False),
    ("debian-7.3-redzone", "slub", "BUG kmalloc-8 (Tainted: G", "FIX kmalloc-8: Restoring",
     False),
    ("debian-7.3-soft-lockup", "lockup", "watchdog: BUG: soft lockup - CPU#0 stuck for",
     "crashmod_init", False),
    ("debian-6.1-hang", "hung-task", "INFO: task insmod:", "hung_task_timeout_secs", False),
    ("debian-6.1-stall", "rcu-stall", "rcu: INFO: rcu_preempt detected stalls",
     "crashmod_init", False),
]  # fmt: skip


@pytest.mark.parametrize(("name", "kind", "line", "in_excerpt", "fatal"), CASES)
def test_recorded_crash_is_found(
    name: str, kind: str, line: str, in_excerpt: str, fatal: bool
) -> None:
    crash = find_crash(log(name))
    assert crash is not None
    assert crash.kind == kind
    assert crash.line.startswith(line)
    assert in_excerpt in crash.excerpt
    assert crash.line in crash.excerpt
    assert crash.complete
    assert crash.fatal is fatal
    assert len(crash.excerpt.splitlines()) <= MAX_LINES_AFTER + 3


@pytest.mark.parametrize(("name", "kind", "line", "in_excerpt", "fatal"), CASES)
def test_streamed_report_is_complete_before_the_console_ends(
    name: str, kind: str, line: str, in_excerpt: str, fatal: bool
) -> None:
    """Each kind of report has an end the watcher recognises, so a caller waiting
    for `settled` gets the whole report without waiting for QEMU to exit."""
    watcher = CrashWatcher()
    watcher.feed(log(name))
    crash = watcher.crash
    assert crash is not None and crash.kind == kind
    if name == "debian-6.1-hang":  # a hung task's dump has no end marker of its own
        return
    assert crash.complete and watcher.settled.is_set()
    assert in_excerpt in crash.excerpt


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("debian-6.1-ud2", "crashmod_init+0x33/0x1000 [crashmod]"),
        ("debian-6.12-ud2", "crashmod_init+0x37/0xff0 [crashmod]"),
        ("debian-7.3-ud2", "crashmod_init+0x37/0xff0 [crashmod]"),
        ("debian-7.3-oops", "crashmod_init+0x16a/0xff0 [crashmod]"),
        ("debian-6.1-oops", "crashmod_init+0x3a/0x1000 [crashmod]"),
    ],
)
def test_summary_says_where_the_kernel_died(name: str, where: str) -> None:
    crash = find_crash(log(name))
    assert crash is not None
    assert crash.where == where
    assert crash.summary.endswith(f"(RIP {where})")
    assert "\n" not in crash.summary


def test_warning_summary_does_not_repeat_the_function() -> None:
    crash = find_crash(log("debian-6.1-warn"))
    assert crash is not None and crash.summary == f"warning: {crash.line}"


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


def test_a_fatal_report_outranks_an_earlier_non_fatal_one() -> None:
    watcher = CrashWatcher()
    watcher.feed(log("debian-6.1-warn"))
    first = watcher.crash
    assert first is not None and first.kind == "warning" and watcher.fatal is None
    assert watcher.settled.is_set()
    watcher.feed(log("debian-6.1-panic"))
    crash = watcher.crash
    assert crash is not None and crash.kind == "panic" and crash.fatal
    assert watcher.fatal == crash
    assert [r.kind for r in watcher.reports] == ["warning", "panic"]


def test_the_first_of_several_non_fatal_reports_is_the_one_reported() -> None:
    watcher = CrashWatcher()
    watcher.feed(log("debian-6.1-double-free"))
    watcher.feed(log("debian-6.1-warn"))
    crash = watcher.crash
    assert crash is not None and crash.kind == "slub"
    assert [r.kind for r in watcher.reports] == ["slub", "warning"]


def test_nothing_after_a_fatal_report_counts() -> None:
    reports = find_reports(log("debian-6.1-oops-panic") + log("debian-6.1-warn"))
    assert [r.kind for r in reports] == ["oops"]


def test_a_new_fatal_report_unsettles_until_it_is_complete() -> None:
    watcher = CrashWatcher()
    watcher.feed(log("debian-6.1-warn"))
    assert watcher.settled.is_set()
    text = log("debian-6.1-oops")
    watcher.feed(text[: text.index("---[ end trace")])
    assert not watcher.settled.is_set()
    watcher.feed(text[text.index("---[ end trace") :])
    assert watcher.settled.is_set()


def test_kernel_line_after_an_unfinished_prompt_is_recognised() -> None:
    text = "klp-guest:/# [   12.345678] BUG: scheduling while atomic: insmod/99/0x00000002\n"
    crash = find_crash(text)
    assert crash is not None and crash.kind == "bug"
    assert crash.line == "BUG: scheduling while atomic: insmod/99/0x00000002"


# Written from the kernels' format strings (mm/kasan/report.c, mm/kfence/report.c,
# lib/ubsan.c, kernel/watchdog*.c, arch/x86/kernel/dumpstack.c): no Debian kernel
# enables KASAN or UBSAN reports, and TCG has no NMI watchdog.
SYNTHETIC = {
    "kasan": """\
[   10.100000] ==================================================================
[   10.100001] BUG: KASAN: slab-use-after-free in crashmod_init+0x50/0x1000 [crashmod]
[   10.100002] Read of size 8 at addr ffff888003c4e0c0 by task insmod/110
[   10.100003] Call Trace:
[   10.100004]  <TASK>
[   10.100005]  crashmod_init+0x50/0x1000 [crashmod]
[   10.100006]  </TASK>
[   10.100007] The buggy address belongs to the object at ffff888003c4e0c0
[   10.100008] ==================================================================
[   10.100009] Disabling lock debugging due to kernel taint
""",
    "kfence": """\
[   10.200000] ==================================================================
[   10.200001] BUG: KFENCE: use-after-free read in crashmod_init+0x50/0x1000 [crashmod]
[   10.200002] Use-after-free read at 0x000000004c4e5e3a (in kfence-#12):
[   10.200003]  crashmod_init+0x50/0x1000 [crashmod]
[   10.200004] ==================================================================
""",
    "ubsan": """\
[   10.300000] ================================================================================
[   10.300001] UBSAN: array-index-out-of-bounds in crashmod.c:20:9
[   10.300002] index 8 is out of range for type 'int [8]'
[   10.300003] ================================================================================
""",
    "lockup": """\
[   10.400000] NMI watchdog: Watchdog detected hard LOCKUP on cpu 0
[   10.400001] RIP: 0010:crashmod_init+0x50/0x1000 [crashmod]
[   10.400002] ---[ end trace 0000000000000000 ]---
""",
    "oops": """\
[   10.500000] BUG: stack guard page was hit at 00000000a1b2c3d4 (stack is 0000000011aa22bb..)
[   10.500001] kernel stack overflow (double-fault): 0000 [#1] PREEMPT SMP NOPTI
[   10.500002] RIP: 0010:crashmod_init+0x50/0x1000 [crashmod]
[   10.500003] ---[ end trace 0000000000000000 ]---
""",
}
SYNTHETIC_FATAL = {"kasan": False, "kfence": False, "ubsan": False, "lockup": True, "oops": True}


@pytest.mark.parametrize("kind", sorted(SYNTHETIC))
def test_reports_no_debian_kernel_prints(kind: str) -> None:
    watcher = CrashWatcher()
    watcher.feed(SYNTHETIC[kind])
    crash = watcher.crash
    assert crash is not None and crash.kind == kind
    assert crash.fatal is SYNTHETIC_FATAL[kind]
    assert crash.complete, "the report's own end marker ends it"
    assert "Disabling lock debugging" not in crash.excerpt


@pytest.mark.parametrize(
    "trap", ["divide error", "stack segment", "double fault", "int3", "alignment check"]
)
def test_every_die_header_of_6_1_is_an_oops(trap: str) -> None:
    crash = find_crash(f"[    5.000000] {trap}: 0000 [#1] PREEMPT SMP NOPTI\n")
    assert crash is not None and crash.kind == "oops" and crash.fatal


@pytest.mark.parametrize(
    "line",
    [
        "[    5.000000] klp-harness: step 3: load p  # BUG: not a report",
        "[    5.000000] crashmod: value: 0000 [not a die header]",
        "modprobe: WARNING: Module x not found",
        "BUG kmalloc-8 (no timestamp): not a kernel line",
    ],
)
def test_lines_that_only_look_like_reports(line: str) -> None:
    assert find_crash(line + "\n") is None


@pytest.mark.parametrize(
    "name",
    [
        "debian-6.1-ud2",
        "debian-6.1-double-free",
        "debian-6.12-ud2",
        "debian-6.12-double-free",
        "debian-7.3-ud2",
        "debian-7.3-double-free",
    ],
)
def test_boot_with_slub_debug_has_no_report(name: str) -> None:
    """These guests booted with slub_debug=FZPU (as the harness's do): nothing before
    the module's own line may count as a report."""
    text = log(name)
    assert "slub_debug=FZPU" in text
    assert find_reports(text[: text.index("crashmod: ")]) == []


@pytest.mark.parametrize(
    ("name", "report"),
    [
        ("debian-6.1-ftrace-null-func",
         "warning at kernel/trace/ftrace.c:7660 arch_ftrace_ops_list_func"),
        ("debian-6.12-warn",
         "warning at /tmp/klp-crashmod/build-debian-6.12/crashmod.c:12 crashmod_init"),
        ("debian-7.3-warn", "warning at crashmod.c:52 crashmod_init"),
    ],
)  # fmt: skip
def test_a_warning_is_reported_on_the_models_terms(name: str, report: str) -> None:
    """What a predicted kernel report is compared with (record.py `report`)."""
    from harness.runner.observe import report_of

    crash = find_crash(log(name))
    assert crash is not None and report_of(crash) == report


def test_a_warning_in_a_steps_kernel_log_is_its_report() -> None:
    """The log holds the WARN when the step's command returns; the console may not yet."""
    from harness.runner.observe import parse_kmsg, report_in

    lines = [
        ln.split("] ", 1)[1] for ln in log("debian-6.1-ftrace-null-func").splitlines() if "] " in ln
    ]
    texts = [r.text for r in parse_kmsg("\n".join(f"<4>{ln}" for ln in lines))]
    assert report_in(texts) == "warning at kernel/trace/ftrace.c:7660 arch_ftrace_ops_list_func"
    assert report_in([t for t in texts if "WARNING" not in t]) == ""
