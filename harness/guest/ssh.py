"""SSH into the guest (paramiko client, dropbear server), for interactive shells.

Commands and file copies use the command channel (harness.guest.channel), which a
restored guest answers at once; an SSH login into a TCG guest costs most of a
second, so it is made only when a person wants a shell.

Keys: an ed25519 key pair per guest (or per saved guest), whose public half the
guest learns from its kernel command line.  The guest's host key is generated at
boot; the harness reads it over the command channel and accepts no other.
"""

from __future__ import annotations

import logging
import os
import select
import shlex
import socket
import sys
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.guest.errors import GuestError, GuestTimeout

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


def public_key(key_file: Path) -> str:
    """The base64 public half of a private key file made by `new_key`."""
    return str(paramiko.Ed25519Key.from_private_key_file(str(key_file)).get_base64())


def connect(
    port: int, key_file: Path, deadline: float, poll: Poll, host_key: str | None = None
) -> paramiko.Transport:
    """Log in as root, retrying until the guest's dropbear answers or `deadline`.
    `host_key` ("ssh-ed25519 AAAA..."): the only server key accepted."""
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
            _check_host_key(transport, host_key)
            transport.auth_publickey(USER, key)
            return transport
        except (OSError, EOFError, paramiko.SSHException) as exc:
            last_error = str(exc) or type(exc).__name__
            if transport is not None:
                transport.close()
            time.sleep(0.1)
    raise GuestTimeout(f"SSH to the guest did not come up: {last_error}")


def _check_host_key(transport: paramiko.Transport, expected: str | None) -> None:
    if expected is None:
        return
    got = transport.get_remote_server_key()
    if f"{got.get_name()} {got.get_base64()}" != expected:
        transport.close()
        raise GuestError("the guest's SSH host key is not the one it reported: refusing it")


class SshSession:
    """The guest's SSH side: a persistent shell, file copies, an interactive shell."""

    def __init__(self, transport: paramiko.Transport, poll: Poll) -> None:
        self.transport = transport
        self._poll = poll

    def interactive(self, on_crash: Callable[[], str | None]) -> None:
        """A login shell on the user's terminal, until they exit it."""
        try:
            chan = self.transport.open_session()
            size = os.get_terminal_size() if sys.stdin.isatty() else os.terminal_size((80, 24))
            chan.get_pty(os.environ.get("TERM", "vt100"), size.columns, size.lines)
            chan.invoke_shell()
        except TRANSPORT_ERRORS as exc:
            connection_lost(self._poll, f"no SSH shell in the guest: {exc or type(exc).__name__}")
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


HOST_KEY_COMMAND = "dropbearkey -y -f /etc/dropbear/ed25519_host_key"


def parse_host_key(out: str) -> str:
    """The "ssh-ed25519 AAAA..." line of HOST_KEY_COMMAND's output."""
    for line in out.splitlines():
        if line.startswith("ssh-ed25519 "):
            return " ".join(line.split()[:2])
    raise GuestError("the guest's SSH host key could not be read")


def ssh_command_line(port: int, key_file: Path, known_hosts: Path) -> str:
    """`ssh` into the guest from another terminal, its host key pinned."""
    return shlex.join([
        "ssh", "-i", str(key_file), "-p", str(port),
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-o", "LogLevel=ERROR", "root@127.0.0.1",
    ])  # fmt: skip
