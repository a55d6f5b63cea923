"""The command channel's host end against a scripted guest side (no VM): a shell that
ends mid-command is reported at once, and a resync after a kill ignores init's notice."""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.guest.channel import PortShell, describe_status, frame
from harness.guest.errors import GuestError, HostFailure
from harness.guest.qmp import connect_unix

Guest = Callable[[socket.socket, socket.socket], None]  # the guest side's script


def read_line(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        data += sock.recv(1)
    return data.decode()


def answer(out: socket.socket, err: socket.socket, line: str, stdout: str) -> None:
    """What the guest's bash prints for one framed command (its text follows the
    line: consumed here)."""
    size = re.search(r" -N (\d+) ", line)
    assert size is not None
    text = b""
    while len(text) < int(size.group(1)):
        text += out.recv(int(size.group(1)) - len(text))
    nonce = re.search(r"([0-9a-f]{16}):err", line)
    assert nonce is not None
    err.sendall(f"\n{nonce.group(1)}:err\n".encode())
    out.sendall(f"{stdout}\n{nonce.group(1)}:out 0\n".encode())


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[Callable[[Guest], PortShell]]:
    threads: list[threading.Thread] = []
    shells: list[PortShell] = []

    def start(guest: Guest) -> PortShell:
        servers = []
        for name in ("cmd.sock", "err.sock"):
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(str(tmp_path / name))
            server.listen(1)
            servers.append(server)

        def serve() -> None:
            out, _ = servers[0].accept()
            err, _ = servers[1].accept()
            guest(out, err)
            time.sleep(0.2)
            out.close()
            err.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        shell = PortShell(tmp_path / "cmd.sock", tmp_path / "err.sock", time.monotonic() + 5,
                          lambda: None)  # fmt: skip
        shells.append(shell)
        return shell

    yield start
    for shell in shells:
        shell.close()
    for thread in threads:
        thread.join(5)


def test_a_shell_killed_mid_command_fails_it_at_once(channel: Callable[[Guest], PortShell]) -> None:
    def guest(out: socket.socket, err: socket.socket) -> None:
        read_line(out)
        out.sendall(b"partial output\n")
        err.sendall(b"\nklp-channel: shell ended 137\n")

    shell = channel(guest)
    started = time.monotonic()
    with pytest.raises(GuestError, match=r"^the guest's command shell was killed by SIGKILL$"):
        shell.run("sleep 100", timeout=30)
    assert time.monotonic() - started < 5


def test_resync_skips_the_notice_of_the_killed_shell(
    channel: Callable[[Guest], PortShell],
) -> None:
    def guest(out: socket.socket, err: socket.socket) -> None:
        # The stuck command's shell was killed: init announces it, a new bash reads on.
        out.sendall(b"late output\n")
        err.sendall(b"\nklp-channel: shell ended 137\n")
        answer(out, err, read_line(out), "4242")

    shell = channel(guest)
    shell.resync(timeout=5)
    assert shell.session == 4242


@pytest.mark.parametrize(
    ("status", "text"),
    [(137, "was killed by SIGKILL"), (143, "was killed by SIGTERM"), (0, "exited with status 0"),
     (3, "exited with status 3"), (200, "exited with status 200")],
)  # fmt: skip
def test_describe_status(status: int, text: str) -> None:
    assert describe_status(status) == text


def _bash_reading_frames(*chunks: bytes) -> tuple[str, str]:
    """What a real bash prints when the framed commands arrive on a pipe (not
    seekable: bash then reads its input as it does from the guest's port)."""
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc"],
        input=b"".join(chunks),
        capture_output=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    return proc.stdout.decode(), proc.stderr.decode()


def test_framed_commands_run_exactly_as_sent_and_leave_the_next_intact() -> None:
    tricky = "printf '%s|' \"it's\" 'a \"b\"' \\\\n ünï; echo; x=1; echo $((x + 1)); false"
    data = b"payload bytes\nwith a line\n"
    feed = frame(f"head -c {len(data)} | wc -c", "1" * 16, stdin_null=False)
    stdout, stderr = _bash_reading_frames(
        frame(tricky, "0" * 16).encode(),
        feed.encode() + data,
        frame("echo after; echo $x", "2" * 16).encode(),
    )
    assert stdout.split("\n" + "0" * 16 + ":out 1\n")[0] == 'it\'s|a "b"|\\n|ünï|\n2\n'
    assert f"{len(data)}\n\n{'1' * 16}:out 0\n" in stdout
    assert stdout.endswith("after\n\n\n" + "2" * 16 + ":out 0\n")  # x stayed in its subshell
    assert stderr.count(":err") == 3


def test_a_socket_the_host_cannot_create_is_the_hosts_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No descriptor left: the channel fails at once as the host's failure (exit 3,
    the snapshot kept), not as a traceback nor as a wait until the deadline."""

    def no_descriptor(*_: object) -> socket.socket:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(socket, "socket", no_descriptor)
    with pytest.raises(HostFailure, match=r"cannot start the guest: no socket for .*Too many"):
        connect_unix(tmp_path / "qmp.sock", time.monotonic() + 60, "QEMU's QMP socket")
