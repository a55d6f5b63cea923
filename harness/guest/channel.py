"""The guest's command channel: one bash on two virtio-serial ports.

The guest's init keeps `bash` running on the virtio-serial port `klp.cmd` (stdin and
stdout) with stderr on `klp.err`; on the host both ports are unix sockets of QEMU.
Why not SSH for commands: a restored snapshot must answer within a fraction of a
second, and an SSH login into a TCG guest (key exchange, a fork and an exec in
dropbear) costs most of a second; a shell that is already running in the snapshot
costs nothing.  The ports are local to QEMU, so nothing is exposed, and they carry
binary data, so files travel on them too.  SSH stays for interactive shells.

Every command runs in a subshell with stdin from /dev/null, framed by random markers
on stdout and stderr followed by its exit code (see `frame`).  A command that times
out is killed with its whole session from the serial console, the guest's init
starts a new bash on the ports, and `resync` skips what the old one left behind.
Whenever the guest's bash ends, init says so on the stderr port (`SHELL_ENDED`): a
command whose shell was killed (from inside the guest, or by the OOM killer) fails
at once, not after its timeout.

The host must keep its end of the ports connected while the guest runs: a port read
returns end-of-file in the guest whenever the host end is closed.  So the sockets
are opened right after QEMU starts, and before a restored guest is resumed.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import select
import shlex
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from harness.guest.errors import GuestError, GuestTimeout
from harness.guest.qmp import connect_unix
from harness.guest.result import CommandResult

CMD_PORT = "klp.cmd"  # stdin + stdout of the guest's bash
ERR_PORT = "klp.err"  # its stderr
SELECT_SLICE = 0.05  # how often a waiting command looks at the crash watcher
CHUNK = 1 << 16
# What the guest's init prints on klp.err when the bash there ends (images/init).
SHELL_ENDED = re.compile(rb"\nklp-channel: shell ended (\d+)\n")

Poll = Callable[[], None]  # raises if the guest is lost (crash watcher, QEMU exit)


def frame(cmd: str, nonce: str, stdin_null: bool = True) -> str:
    """What the guest's bash reads for one command: a line that reads the command's
    text with one `read -N` (bash parses its own input a byte per system call, so it
    never consumes what follows the line; `read -N` takes the exact count in a few),
    runs it in a subshell, then prints an end marker on stderr and one with the exit
    code on stdout.  Then the text itself.  Under TCG each system call costs
    microseconds: a step's script is kilobytes.  The count is of bytes: the guest's
    init starts this bash with LC_ALL=C (images/init)."""
    if "\0" in cmd:
        raise GuestError("a command cannot contain NUL bytes")
    run = '( eval "$__c" )' + (" </dev/null" if stdin_null else "")
    return (
        f"IFS= read -r -N {len(cmd.encode())} __c; {run}; __rc=$?; unset __c; "
        f"printf '\\n%s\\n' {nonce}:err >&2; printf '\\n%s %d\\n' {nonce}:out $__rc\n" + cmd
    )


class PortShell:
    """The host end of the command channel."""

    def __init__(self, cmd_socket: Path, err_socket: Path, deadline: float, poll: Poll) -> None:
        self._out = connect_unix(cmd_socket, deadline, f"the {CMD_PORT} port", poll)
        try:
            self._err = connect_unix(err_socket, deadline, f"the {ERR_PORT} port", poll)
        except GuestError:
            self._out.close()
            raise
        self._poll = poll
        self._resyncing = False
        self.session = 0  # the guest bash's session id, for killing a stuck command

    def start(self, timeout: float) -> None:
        """Wait for the guest's bash to answer; learn its session id (builtins only)."""
        result = self.run("read -r _ _ _ _ _ s _ < /proc/$$/stat; echo $s", timeout)
        last = result.stdout.strip().splitlines()[-1:] or [""]
        try:
            self.session = int(last[0])
        except ValueError:
            raise GuestError(f"the command channel answered {result.stdout!r}") from None

    # ---- commands ---------------------------------------------------------------------

    def run(self, cmd: str, timeout: float) -> CommandResult:
        nonce = secrets.token_hex(8)
        self._send(frame(cmd, nonce).encode())
        return self._collect(nonce, time.monotonic() + timeout, f"`{cmd}` (timeout {timeout:g} s)")

    def put_file(self, local: Path, remote: str, timeout: float = 120.0) -> None:
        """Copy a file in."""
        size = local.stat().st_size
        what = f"copying {local} to {remote}"
        result = self._with_data(f"busybox head -c {size} > {shlex.quote(remote)}", local,
                                 what, timeout)  # fmt: skip
        if result.exit_code != 0:
            raise GuestError(f"{what} failed: {result.stderr.strip()}")

    def feed(self, local: Path, command: str, timeout: float = 120.0) -> CommandResult:
        """Run `command` with the bytes of `local` on its stdin (e.g. an archive to
        unpack), without storing them in the guest first."""
        size = local.stat().st_size
        return self._with_data(f"busybox head -c {size} | {{ {command}; }}", local,
                               f"`{command}` < {local}", timeout)  # fmt: skip

    def _with_data(self, cmd: str, local: Path, what: str, timeout: float) -> CommandResult:
        """Send `cmd`, then the bytes of `local`: `head -c SIZE` in `cmd` reads exactly
        the bytes that follow the command line (bash reads a non-seekable input byte
        by byte, so it has consumed nothing past the line; busybox's head is static,
        so it starts fast, and reads no more than it is asked)."""
        nonce = secrets.token_hex(8)
        deadline = time.monotonic() + timeout
        self._send(frame(cmd, nonce, stdin_null=False).encode())
        with local.open("rb") as src:
            while chunk := src.read(CHUNK):
                self._send(chunk)
        return self._collect(nonce, deadline, what)

    def resync(self, timeout: float = 10.0) -> None:
        """After the guest's bash was killed: wait for the new one, drop leftovers
        (the old one's output and init's notice of its end)."""
        self._resyncing = True
        try:
            self.start(timeout)
        finally:
            self._resyncing = False

    # ---- transport ---------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        try:
            self._out.sendall(data)
        except OSError as exc:
            self._poll()
            raise GuestError(f"the command channel closed: {exc.strerror or exc}") from None

    def _collect(self, nonce: str, deadline: float, what: str) -> CommandResult:
        """Read both ports until both end markers arrived."""
        out_end = re.compile(rb"\n" + nonce.encode() + rb":out (\d+)\n")
        err_end = b"\n" + nonce.encode() + b":err\n"
        out, err = bytearray(), bytearray()
        match: re.Match[bytes] | None = None
        err_at = -1
        while match is None or err_at < 0:
            ready = self._wait(deadline, what)
            seen_out, seen_err = len(out), len(err)
            if self._out in ready:
                out += self._recv(self._out)
            if self._err in ready:
                err += self._recv(self._err)
            if match is None:
                match = out_end.search(out, max(0, seen_out - 64))
            if err_at < 0:
                err_at = err.find(err_end, max(0, seen_err - 64))
            ended = SHELL_ENDED.search(err, max(0, seen_err - 64))
            if ended is not None and match is None and not self._resyncing:
                raise GuestError(f"the guest's command shell {describe_status(int(ended[1]))}")
        # Output before a previous command's markers (after a resync) is not ours.
        stdout = bytes(out[: match.start()]).decode(errors="replace")
        stderr = bytes(err[:err_at]).decode(errors="replace")
        return CommandResult(int(match.group(1)), stdout, stderr)

    def _wait(self, deadline: float, what: str) -> list[socket.socket]:
        self._poll()
        left = deadline - time.monotonic()
        if left <= 0:
            raise GuestTimeout(f"{what} did not finish in the guest")
        ready, _, _ = select.select([self._out, self._err], [], [], min(SELECT_SLICE, left))
        return ready

    def _recv(self, sock: socket.socket) -> bytes:
        try:
            data = sock.recv(CHUNK)
        except OSError as exc:
            self._poll()
            raise GuestError(f"the command channel closed: {exc.strerror or exc}") from None
        if not data:
            self._poll()
            raise GuestError("the command channel closed (QEMU gone?)")
        return data

    def close(self) -> None:
        for sock in (self._out, self._err):
            with contextlib.suppress(OSError):
                sock.close()


def describe_status(status: int) -> str:
    """How bash ended, from its exit status as init saw it: "was killed by SIGKILL"
    for 137."""
    if status > 128:
        try:
            return f"was killed by {signal.Signals(status - 128).name}"
        except ValueError:
            pass
    return f"exited with status {status}"
