"""Parsing of guest output into observations (no VM)."""

from harness.guest.shell import errno_from_message
from harness.runner import observe

# `busybox dmesg -c -r` as a debian-6.12 guest printed it (lines as the kernel's
# syslog formats them: one per line of a record, each with its prefix).
KMSG = (
    "<6>[   11.680001] livepatch: enabling patch 'test_klp_livepatch'\n"
    "<4>[   11.680100] test_klp_livepatch: tainting kernel with TAINT_LIVEPATCH\n"
    "<7>[   11.680200] livepatch: 'test_klp_livepatch': initializing patching transition\n"
    "<12>[   11.685136] % modprobe test_klp_livepatch\n"
    "<6>[   11.685300] virtio_net virtio0: something unrelated\n"
    "<12>[   11.685731] a\tb\n"
    "not a record\n"
)


def test_parse_kmsg_records_numbered_from_where_the_log_was() -> None:
    records = observe.parse_kmsg(KMSG, first_seq=1021)
    assert [r.seq for r in records] == [1021, 1022, 1023, 1024, 1025, 1026]
    assert records[3].level == 4  # 12 = facility user (1) << 3 | warning (4)
    assert records[3].text == "% modprobe test_klp_livepatch"
    assert records[5].text == "a\tb"


def test_kernel_log_numbers_each_dump_after_the_last() -> None:
    log = observe.KernelLog(shell=None)  # type: ignore[arg-type]
    log.last_seq = 9
    assert [r.seq for r in log.feed(KMSG)] == [10, 11, 12, 13, 14, 15]
    assert [r.seq for r in log.feed("<6>[ 12.0] next\n")] == [16]


def test_filter_log_like_upstream() -> None:
    texts = [r.text for r in observe.parse_kmsg(KMSG)]
    assert observe.filter_log(texts, ["test_klp_livepatch"]) == [
        "livepatch: enabling patch 'test_klp_livepatch'",
        "livepatch: 'test_klp_livepatch': initializing patching transition",
        "% modprobe test_klp_livepatch",
    ]


def test_lines_naming_a_module_are_kept_like_upstreams_test_klp_grep() -> None:
    lines = [
        "% modprobe foo",
        "foo: foo_init",
        "bar: bar_init",
        "modprobe: ERROR: could not insert 'foo': No such device",
        "% rmmod foobar",
    ]
    assert observe.filter_log(lines, ["foo"]) == [
        "% modprobe foo",
        "foo: foo_init",
        "modprobe: ERROR: could not insert 'foo': No such device",
    ]


def test_normalize_pointers_first_seen_order() -> None:
    lines = [
        "m: klp_shadow_get(obj=ffff888003c6a000, id=0x1234) = 0000000000000000",
        "m: shadow_ctor: ffff888004000000 -> ffff888003c6a008",
        "m: klp_shadow_get(obj=ffff888003c6a000, id=0x1234) = ffff888004000000",
    ]
    assert observe.normalize_pointers(lines) == [
        "m: klp_shadow_get(obj=PTR1, id=0x1234) = PTR0",
        "m: shadow_ctor: PTR2 -> PTR3",
        "m: klp_shadow_get(obj=PTR1, id=0x1234) = PTR2",
    ]


def test_a_relocation_sections_index_reads_as_sec_on_x86s_lines_only() -> None:
    line = (
        "module: x86/modules: Invalid relocation target, existing value is nonzero for "
        "sec 41, idx 0, type 1, loc ffffffffc0353010, val ffffffffc0359000"
    )
    other = "p: for sec 41, idx 0 of its own"  # a module's line keeps its numbers
    assert observe.normalize_reloc_sections([line, other]) == [
        line.replace("sec 41,", "sec SEC,"),
        other,
    ]
    assert observe.normalize_pointers(observe.normalize_reloc_sections([line]))[0].endswith(
        "sec SEC, idx 0, type 1, loc PTR1, val PTR2"
    )


def test_parse_sysfs() -> None:
    out = (
        "/sys/kernel/livepatch/p/enabled=1\n"
        "/sys/kernel/livepatch/p/force=<write-only>\n"
        "/sys/kernel/livepatch/p/transition=0\n"
        "/sys/kernel/livepatch/p/vmlinux/patched=1\n"
    )
    assert observe.parse_sysfs(out) == {
        "p/enabled": "1",
        "p/force": "<write-only>",
        "p/transition": "0",
        "p/vmlinux/patched": "1",
    }


def test_impls_from_reads() -> None:
    out = (
        "vmlinux:cmdline_proc_show=test_klp_livepatch: this has been live patched\n"
        "vmlinux:meminfo_proc_show=orig\n"
        "klp_target:alpha=alpha: orig\n"
    )
    assert observe.parse_impls(out) == {
        "vmlinux:cmdline_proc_show": "test_klp_livepatch",
        "vmlinux:meminfo_proc_show": "orig",
        "klp_target:alpha": "orig",
    }


def test_snapshot_reads_vmlinux_through_proc_and_targets_through_debugfs() -> None:
    cmd = observe.snapshot_script(["t"], [("vmlinux", "cmdline_proc_show"), ("t", "f")])
    assert "read -r l < /proc/cmdline" in cmd
    assert "read -r l < /sys/kernel/debug/klp_harness/t/f" in cmd


def test_snapshot_sections_split() -> None:
    out = (
        "@@kmsg\n<6>[    2.000001] livepatch: x\n@@sysfs\n/sys/kernel/livepatch/p/enabled=1\n"
        "@@modules\np=1\n@@impls\nvmlinux:cmdline_proc_show=p: this has been live patched\n"
    )
    sections = observe.split_sections(out)
    assert observe.parse_kmsg(sections["kmsg"])[0].text == "livepatch: x"
    assert observe.parse_sysfs(sections["sysfs"]) == {"p/enabled": "1"}
    assert observe.parse_modules(sections["modules"]) == {"p": "1"}
    assert observe.parse_impls(sections["impls"]) == {"vmlinux:cmdline_proc_show": "p"}


def test_errno_from_tool_messages() -> None:
    assert errno_from_message("modprobe: ERROR: could not insert 'x': No such device") == 19
    assert (
        errno_from_message("rmmod: can't unload module 'x': Resource temporarily unavailable") == 11
    )
    assert errno_from_message("sh: echo: write error: Invalid argument") == 22
    assert (
        errno_from_message('sysctl: setting key "kernel.ftrace_enabled": Device or resource busy')
        == 16
    )
