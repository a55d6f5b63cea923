"""A frozen QEMU told from a busy guest (harness.guest.liveness), without a guest: a
real stopped process stands for a SIGSTOPped QEMU, a unix socket server for its QMP
(one that never greets, one that says the guest is paused), and a fake clock drives
time, so nothing here waits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.guest import liveness
from harness.guest.errors import GuestCrashed, HostFailure
from harness.guest.liveness import GuestFrozen, Liveness, process_state


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def process() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def qmp_server(path: Path, status: str | None) -> threading.Thread:
    """A QMP socket answering query-status with `status`, or never greeting (None)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if status is None:
                continue  # connected, never greeted: a QEMU that does not run its loop
            stream = conn.makefile("rw")
            stream.write(json.dumps({"QMP": {}}) + "\n")
            stream.flush()
            for line in stream:
                command = json.loads(line)["execute"]
                answer = {"status": status} if command == "query-status" else {}
                stream.write(json.dumps({"return": answer}) + "\n")
                stream.flush()
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_stopped_qemu_is_frozen_after_a_few_seconds(process: subprocess.Popen[bytes]) -> None:
    clock = Clock()
    watch = Liveness(process.pid, Path("/nonexistent"), lambda: "step 2 (load lp)", clock)
    os.kill(process.pid, signal.SIGSTOP)
    for _ in range(20):  # let the kernel stop it (state T)
        if process_state(process.pid) == "T":
            break
        threading.Event().wait(0.05)
    clock.now += liveness.CHECK_EVERY
    watch.check()  # stopped, for less than STOPPED_FOR: not yet
    clock.now += liveness.STOPPED_FOR
    with pytest.raises(GuestFrozen) as info:
        watch.check()
    assert str(info.value) == (
        f"the guest is frozen: QEMU (pid {process.pid}) is stopped by a signal (SIGSTOP?) "
        f"for {liveness.STOPPED_FOR:.0f} s, during step 2 (load lp)"
    )
    assert isinstance(info.value, HostFailure)  # the host's failure, not the kernel's


def test_a_running_process_is_not_frozen(process: subprocess.Popen[bytes], tmp_path: Path) -> None:
    qmp_server(tmp_path / "qmp.sock", "running")
    clock = Clock()
    watch = Liveness(process.pid, tmp_path / "qmp.sock", clock=clock)
    for _ in range(5):
        clock.now += liveness.QUIET_FOR
        watch.check()  # asks QMP each time: "running"


def test_a_qemu_that_does_not_answer_qmp_twice_is_frozen(
    process: subprocess.Popen[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(liveness, "QMP_TIMEOUT", 0.2)
    qmp_server(tmp_path / "qmp.sock", None)
    clock = Clock()
    watch = Liveness(process.pid, tmp_path / "qmp.sock", lambda: "step 1 (load lp)", clock)
    clock.now += liveness.QUIET_FOR
    watch.check()  # one miss: not yet
    clock.now += liveness.QUIET_FOR
    with pytest.raises(GuestFrozen, match=r"does not answer on QMP for 16 s, during step 1"):
        watch.check()


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        ("paused", GuestFrozen, "the guest is frozen: QEMU's run state is 'paused'"),
        ("io-error", GuestFrozen, "the guest is frozen: QEMU's run state is 'io-error'"),
        ("guest-panicked", GuestCrashed, "QEMU stopped the guest: run state guest-panicked"),
    ],
)
def test_a_run_state_other_than_running_is_named(
    process: subprocess.Popen[bytes], tmp_path: Path, status: str, error: type, text: str
) -> None:
    qmp_server(tmp_path / "qmp.sock", status)
    clock = Clock()
    watch = Liveness(process.pid, tmp_path / "qmp.sock", clock=clock)
    clock.now += liveness.QUIET_FOR
    with pytest.raises(error) as info:
        watch.check()
    assert str(info.value) == text
