"""Upstream's own livepatch selftests, unmodified, pass in our guests.

On guests without the kernel's memory checks (`--fast-guest`): those checks are there
to catch the harness's generated modules corrupting the heap, and these scripts load
only upstream's own test modules; the scripts run a third faster without them
(debian-6.1: 41 s instead of 61 s), and they are the longest tests of the suite."""

from __future__ import annotations

import re

import pytest

from harness.cli import main as cli_main
from harness.kernels import profile_names

pytestmark = pytest.mark.vm


@pytest.mark.parametrize("profile_name", profile_names())
def test_upstream_selftests_pass(profile_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["selftests", "--kernel", profile_name, "--ktap", "--fast-guest"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    cases = [line.strip() for line in out.splitlines() if re.match(r"    (ok|not ok) \d+ ", line)]
    oks = [c for c in cases if c.startswith("ok ")]
    # 6.1 ships 22 cases; later kernels add more (6.12: replace sysfs, syscall; 7.3:
    # module function patching, stack_order, kprobe, ftrace tracing: 32).
    assert len(oks) == len(cases) >= 22, out
    if profile_name == "debian-7.3":
        assert len(cases) >= 32 and any("stack_order" in c for c in cases), out
        assert any("kprobed function" in c for c in cases), out
