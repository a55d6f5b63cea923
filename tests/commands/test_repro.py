"""`klp-harness repro` leaves the user in a working guest shell at the chosen step, and
tears everything down when the shell exits."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pexpect
import pytest

pytestmark = pytest.mark.vm

SCENARIO = Path(__file__).parents[1] / "scenarios/upstream/12_callbacks_busy_target.toml"


def qemu_pids_tagged(tag: str) -> list[str]:
    """QEMU processes started by this test (they inherit its environment tag); other
    guests may run on the machine at the same time."""
    out = subprocess.run(["pgrep", "-f", "qemu-system-x86_64"], capture_output=True, text=True)
    tagged = []
    for pid in out.stdout.split():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if tag.encode() in environ:
            tagged.append(pid)
    return tagged


def test_repro_shell_at_a_blocked_transition(tmp_path: Path) -> None:
    tag = f"KLP_REPRO_TEST={uuid.uuid4()}"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "harness.cli", "repro", str(SCENARIO), "--until", "2"],
        cwd=tmp_path,
        encoding="utf-8",
        timeout=240,
        dimensions=(40, 200),
        env={**os.environ, tag.split("=")[0]: tag.split("=")[1]},
    )
    child.delaybeforesend = None
    try:
        child.expect(r"from another terminal: ssh ")
        child.expect(r"exit the shell to stop the guest")
        child.expect(r"[#$] ")
        # step 2 loaded the patch with --nowait: its transition is still blocked
        child.sendline("echo state=$(cat /sys/kernel/livepatch/test_klp_callbacks_demo/transition)")
        child.expect(r"state=1")
        assert qemu_pids_tagged(tag), "the guest's QEMU should carry the tag"
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert qemu_pids_tagged(tag) == []
