"""A kernel bug the model refuses to follow, shown on the guest where it is
(harness/model/bpf.py, tests/scenarios/bugs/05_*): on debian-6.1 (6.1.192), a
livepatched function with a BPF fentry program, then an fexit one, WARNs at its next
call, the backport of "ftrace: bpf: Fix IPMODIFY + DIRECT in modify_ftrace_direct()"
being half there.  The crash watcher must name the WARN; if a later 6.1 fixes it, this
test fails and the model's refusal (bpf.attach_refusal) goes."""

from __future__ import annotations

import re

import pytest

from harness.guest.errors import GuestCrashed
from harness.kernels import load_profile
from harness.runner.actions import BPF_PIN
from harness.runner.waits import idle
from harness.samples import build_samples
from tests.test_guest_vm import resumed

pytestmark = pytest.mark.vm


def test_fentry_then_fexit_on_a_livepatched_function_warns_on_6_1() -> None:
    profile = load_profile("debian-6.1")
    sample = build_samples(profile).ko("livepatch-sample")
    with resumed(profile.name) as guest:
        guest.put_file(sample, "/tmp/livepatch-sample.ko")
        guest.run("insmod /tmp/livepatch-sample.ko", check=True)
        guest.run(
            "until read -r t < /sys/kernel/livepatch/livepatch_sample/transition "
            f"&& [ $t = 0 ]; do {idle(0.1)}; done",
            check=True,
        )
        assert guest.run("cat /proc/cmdline").stdout == "this has been live patched\n"
        entry, exit_ = BPF_PIN.format("entry"), BPF_PIN.format("exit")
        guest.run(f"klp-bpf attach fentry cmdline_proc_show {entry}", check=True)
        guest.run(f"klp-bpf attach fexit cmdline_proc_show {exit_}", check=True)
        with pytest.raises(GuestCrashed) as crash:
            guest.run("cat /proc/cmdline")
    message = str(crash.value)
    assert re.search(
        r"WARNING: .* at kernel/trace/ftrace\.c:7660 arch_ftrace_ops_list_func", message
    )
