"""SSH into the guest (paramiko client, dropbear server) with a persistent shell.

Opening an SSH channel per command costs ~165 ms in a TCG guest (dropbear forks
and execs a shell); a trivial command in an already running shell costs ~1 ms.
So `RemoteShell` keeps one bash running and frames every command with random
markers on stdout and stderr, followed by its exit code.  Each command runs in a
subshell, so `cd`, variables or `exit` in one command cannot affect the next.

A command that times out leaves its shell busy: the shell is dropped and the
processes of its session are killed from a fresh one.

Keys are fresh per guest: an ed25519 key pair in the guest's temp dir, whose
public half the guest learns from its kernel command line.  The guest's host key
is not checked: it is generated at boot, and the port is a fresh one on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import select
import shlex
import socket
import sys
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NoReturn

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paramiko.pipe import make_pipe

from harness.guest.errors import GuestError, GuestTimeout
from harness.guest.result import CommandResult

USER = "root"
SELECT_SLICE = 0.05  # how often a waiting command looks at the crash watcher
# QEMU's socket closes a moment before its exit is visible: how long a dropped
# connection waits for the console to say why.
LOST_GRACE = 1.0
# Failed connection attempts during boot are expected; paramiko logs them as errors.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

Poll = Callable[[], None]  # raises if the guest is lost (crash watcher, QEMU exit)
TRANSPORT_ERRORS = (OSError, EOFError, paramiko.SSHException)


def connection_lost(poll: Poll, what: str) -> NoReturn:
    """Raise for a dropped SSH connection or shell, naming the real cause when there
    is one: a crashed guest or a dead QEMU (`poll` raises GuestCrashed for those)."""
    deadline = time.monotonic() + LOST_GRACE
    while True:
        poll()
        if time.monotonic() >= deadline:
            raise GuestError(what)
        time.sleep(SELECT_SLICE)


def new_key(directory: Path) -> tuple[Path, str]:
    """Create an ed25519 key pair; returns (private key file, public key base64)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    path = directory / "id_ed25519"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return path, public.decode().split()[1]


def connect(port: int, key_file: Path, deadline: float, poll: Poll) -> paramiko.Transport:
    """Log in as root, retrying until the guest's dropbear answers or `deadline`."""
    key = paramiko.Ed25519Key.from_private_key_file(str(key_file))
    last_error = "no attempt"
    while time.monotonic() < deadline:
        poll()
        transport: paramiko.Transport | None = None
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
            transport = paramiko.Transport(sock)
            transport.banner_timeout = 2.0
            transport.start_client(timeout=5.0)
            transport.auth_publickey(USER, key)
            return transport
        except (OSError, EOFError, paramiko.SSHException) as exc:
            last_error = str(exc) or type(exc).__name__
            if transport is not None:
                transport.close()
            time.sleep(0.1)
    raise GuestTimeout(f"SSH to the guest did not come up: {last_error}")


class RemoteShell:
    """One long-running bash in the guest, fed commands on stdin."""

    def __init__(self, transport: paramiko.Transport, poll: Poll) -> None:
        self._transport = transport
        self._poll = poll
        self._chan = transport.open_session()
        # A session of its own (dropbear keeps one per connection, shared by all
        # channels), so a stuck command can be killed with all it started.
        self._chan.exec_command("exec setsid bash --noprofile --norc")
        # stderr arrivals do not wake the channel's own fileno(); give them a pipe.
        self._err_pipe = make_pipe()
        self._chan.in_stderr_buffer.set_event(self._err_pipe)  # type: ignore[arg-type]
        self.session = 0
        self.session = int(self.run("cut -d' ' -f6 /proc/$$/stat", timeout=30.0).stdout)

    def run(self, cmd: str, timeout: float) -> CommandResult:
        try:
            return self._run(cmd, timeout)
        except TRANSPORT_ERRORS as exc:
            connection_lost(self._poll, f"SSH connection to the guest failed: {exc}")

    def _run(self, cmd: str, timeout: float) -> CommandResult:
        nonce = secrets.token_hex(8)
        script = (
            f"( eval {shlex.quote(cmd)} ) </dev/null; __rc=$?; "
            f"printf '\\n%s\\n' {nonce}:err >&2; printf '\\n%s %d\\n' {nonce}:out $__rc\n"
        )
        self._chan.sendall(script.encode())
        out_end = re.compile(rb"\n" + nonce.encode() + rb":out (\d+)\n")
        err_end = b"\n" + nonce.encode() + b":err\n"
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        what = f"`{cmd}` (timeout {timeout:g} s)"
        match: re.Match[bytes] | None = None
        err_at = -1
        while match is None or err_at < 0:
            self._wait(deadline, what)
            seen_out, seen_err = len(out), len(err)
            out += self._drain(self._chan.recv_ready, self._chan.recv)
            err += self._drain(self._chan.recv_stderr_ready, self._chan.recv_stderr)
            if match is None:
                match = out_end.search(out, max(0, seen_out - 64))
            if err_at < 0:
                err_at = err.find(err_end, max(0, seen_err - 64))
        # Anything after the markers came from background jobs of the command.
        stdout = bytes(out[: match.start()]).decode(errors="replace")
        stderr = bytes(err[:err_at]).decode(errors="replace")
        return CommandResult(int(match.group(1)), stdout, stderr)

    def _wait(self, deadline: float, what: str) -> None:
        """Block until output may have arrived; raise on timeout or a lost guest."""
        self._poll()
        left = deadline - time.monotonic()
        if left <= 0:
            raise GuestTimeout(f"{what} did not finish in the guest")
        if self._chan.closed or self._chan.exit_status_ready():
            if not self._transport.is_active():
                connection_lost(self._poll, "the SSH connection to the guest closed")
            connection_lost(self._poll, "the guest's SSH shell exited")
        fds = [self._chan.fileno(), self._err_pipe.fileno()]
        select.select(fds, [], [], min(SELECT_SLICE, left))

    @staticmethod
    def _drain(ready: Callable[[], bool], recv: Callable[[int], bytes]) -> bytes:
        data = b""
        while ready():
            data += recv(1 << 20)
        return data

    def close(self) -> None:
        self._chan.close()
        self._err_pipe.close()


class SshSession:
    """The guest's SSH side: a persistent shell, file copies, an interactive shell."""

    def __init__(self, transport: paramiko.Transport, poll: Poll) -> None:
        self.transport = transport
        self._poll = poll
        self._shell: RemoteShell | None = None

    def shell(self) -> RemoteShell:
        if self._shell is None:
            self._shell = RemoteShell(self.transport, self._poll)
        return self._shell

    def run(self, cmd: str, timeout: float) -> CommandResult:
        shell = self.shell()
        try:
            return shell.run(cmd, timeout)
        except GuestTimeout:
            self._abandon(shell)
            raise
        except Exception:
            self._shell = None  # a broken shell is reopened by the next command
            with contextlib.suppress(Exception):
                shell.close()
            raise

    def _abandon(self, shell: RemoteShell) -> None:
        """Drop a shell stuck in a command and kill everything it started."""
        self._shell = None
        shell.close()
        with contextlib.suppress(GuestError):
            self.shell().run(f"pkill -KILL -s {shell.session}", 10.0)

    def put_file(self, local: Path, remote: str, timeout: float = 120.0) -> None:
        """Copy a file in by streaming it into `cat` (dropbear has no SFTP)."""
        with local.open("rb") as src:  # a missing local file is the caller's OSError
            try:
                self._send_file(src, local, remote, timeout)
            except TRANSPORT_ERRORS as exc:
                connection_lost(self._poll, f"SSH connection to the guest failed: {exc}")

    def _send_file(self, src: BinaryIO, local: Path, remote: str, timeout: float) -> None:
        chan = self.transport.open_session()
        try:
            chan.settimeout(timeout)
            chan.exec_command(f"cat > {shlex.quote(remote)}")
            while chunk := src.read(1 << 16):
                chan.sendall(chunk)
            chan.shutdown_write()
            if not chan.status_event.wait(timeout):
                raise GuestTimeout(f"copying {local} to {remote} timed out")
            status = chan.recv_exit_status()
            if status != 0:
                err = chan.recv_stderr(4096).decode(errors="replace").strip()
                raise GuestError(f"copying {local} to {remote} failed: {err}")
        finally:
            chan.close()

    def interactive(self, on_crash: Callable[[], str | None]) -> None:
        """A login shell on the user's terminal, until they exit it."""
        chan = self.transport.open_session()
        size = os.get_terminal_size() if sys.stdin.isatty() else os.terminal_size((80, 24))
        chan.get_pty(os.environ.get("TERM", "vt100"), size.columns, size.lines)
        chan.invoke_shell()
        try:
            warned = _pump(chan, on_crash)
        finally:
            chan.close()
        # The shell may have ended because the guest died: say so before returning.
        deadline = time.monotonic() + LOST_GRACE
        note = on_crash()
        while not warned and not note and time.monotonic() < deadline:
            if self.transport.is_active():
                break  # the user left the shell; the guest is fine
            time.sleep(SELECT_SLICE)
            note = on_crash()
        if note and not warned:
            os.write(sys.stdout.fileno(), f"\r\n[klp-harness: {note}]\r\n".encode())

    def close(self) -> None:
        if self._shell is not None:
            with contextlib.suppress(Exception):
                self._shell.close()
            self._shell = None
        self.transport.close()


def _pump(chan: paramiko.Channel, on_crash: Callable[[], str | None]) -> bool:
    """Copy between the terminal (raw mode) and the channel until the shell exits;
    True if a crash notice was shown."""
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin) if sys.stdin.isatty() else None
    warned = False
    inputs: list[int | paramiko.Channel] = [chan, stdin]
    try:
        if saved is not None:
            tty.setraw(stdin)
        while not chan.exit_status_ready() or chan.recv_ready():
            ready, _, _ = select.select(inputs, [], [], 0.5)
            if chan in ready:
                data = chan.recv(65536)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if stdin in ready:
                data = os.read(stdin, 4096)
                if data:
                    chan.sendall(data)
                else:
                    chan.shutdown_write()
                    inputs.remove(stdin)
            if not warned and (note := on_crash()):
                warned = True
                os.write(sys.stdout.fileno(), f"\r\n[klp-harness: {note}]\r\n".encode())
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
    return warned
