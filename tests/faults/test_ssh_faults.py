"""The guest's SSH server killed while no interactive session uses it.

SSH is only for interactive shells (`repro`, `boot --keep`); commands use the
command channel, so a scenario does not notice a dead dropbear.  The shell that
follows must: at once and in one line, not after a minute of connection attempts,
and not as a paramiko traceback when an idle connection died under it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from harness.guest.errors import GuestError
from harness.kernel.profiles import load_profile
from harness.runner.guests import GuestSource
from tests.faults.common import (
    PROFILE,
    Harness,
    assert_nothing_left,
    assert_one_line_reason,
    scenario_copies,
)

pytestmark = pytest.mark.vm
KILL_DROPBEAR = "pkill -KILL -x dropbear"
NO_SSH = r"^the guest's SSH server \(dropbear\) is not running$|^no SSH shell in the guest: "


def test_repro_shell_after_dropbear_was_killed(tmp_path: Path) -> None:
    """A scenario step kills dropbear; repro then cannot give a shell, and says why."""
    [path] = scenario_copies(tmp_path, ["sshless"])
    fault = {"scenario": "sshless", "step": 1, "action": "guest", "arg": KILL_DROPBEAR}
    harness = Harness(["repro", str(path), "--kernel", PROFILE], tmp_path / "results",
                      faults=[fault], cwd=tmp_path)  # fmt: skip
    started = time.monotonic()
    run = harness.finish(timeout=240)
    assert "PASS  sshless" in run.stderr  # the scenario does not need SSH
    assert_one_line_reason(run, "klp-harness: error: the guest's SSH server (dropbear) is "
                                "not running")  # fmt: skip
    assert run.returncode == 3  # the guest's SSH server is the harness's, not the kernel's
    assert time.monotonic() - started < 120  # no minute of SSH retries
    assert_nothing_left(run)


def test_idle_ssh_connection_whose_server_was_killed(
    monkeypatch: pytest.MonkeyPatch, fast_snapshot: None
) -> None:
    source = GuestSource(load_profile(PROFILE), fast=True)
    read_end, write_end = os.pipe()
    os.write(write_end, b"exit\n")  # the "user" leaves the first shell at once
    os.close(write_end)
    try:
        guest = source.take({}).guest
        with os.fdopen(read_end) as typed:
            monkeypatch.setattr("sys.stdin", typed)
            shell = threading.Thread(target=guest.interactive, daemon=True)
            shell.start()
            shell.join(60)
            assert not shell.is_alive(), "the first shell did not end"
            guest.run(KILL_DROPBEAR, check=True)  # its connection stays open, idle
            with pytest.raises(GuestError, match=NO_SSH):
                guest.interactive()
        assert guest.run("echo alive").stdout == "alive\n"  # the guest itself is fine
    finally:
        source.close()  # also ends a shell that did not
