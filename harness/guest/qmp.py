"""A minimal QMP client: the QEMU machine protocol over the guest's unix socket.

QMP (JSON, one object per line) rather than the human monitor, because saving and
restoring a guest means reading structured answers: the run state while an incoming
migration loads, the status of an outgoing one.  Only what snapshots need is here:
`execute`, and waiting for a run state.  Asynchronous events are read and dropped.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from shlex import quote
from typing import Any

from harness.guest.errors import GuestError, GuestTimeout, HostFailure

POLL = 0.005


class QmpClient:
    """One QMP connection; `close()` it (or use it as a context manager)."""

    def __init__(
        self,
        path: Path,
        deadline: float,
        poll: Callable[[], None] | None = None,
        command_timeout: float = 30.0,
    ) -> None:
        self.command_timeout = command_timeout
        self._sock = connect_unix(path, deadline, "QEMU's QMP socket", poll)
        self._file = self._sock.makefile("rw", encoding="utf-8")
        self._sock.settimeout(max(0.1, deadline - time.monotonic()))
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def __enter__(self) -> QmpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> dict[str, Any]:
        try:
            line = self._file.readline()
        except OSError as exc:
            raise GuestError(f"QMP: {exc}") from None
        if not line:
            raise GuestError("QMP: QEMU closed the connection")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def execute(self, command: str, timeout: float | None = None, **arguments: Any) -> Any:
        """Run one command; returns its `return` value, raises on `error`."""
        self._sock.settimeout(self.command_timeout if timeout is None else timeout)
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        try:
            self._file.write(json.dumps(request) + "\n")
            self._file.flush()
        except OSError as exc:
            raise GuestError(f"QMP {command}: {exc}") from None
        while True:
            reply = self._read()
            if "event" in reply:
                continue
            if "error" in reply:
                raise GuestError(f"QMP {command}: {reply['error'].get('desc', reply['error'])}")
            return reply.get("return")

    def status(self) -> str:
        """The VM's run state: "running", "paused", "inmigrate", "postmigrate", ..."""
        return str(self.execute("query-status")["status"])

    def wait_status_not(self, state: str, deadline: float) -> str:
        """Poll until the run state is no longer `state`; returns the new one."""
        while (current := self.status()) == state:
            if time.monotonic() > deadline:
                raise GuestTimeout(f"QEMU stayed in run state {state!r}")
            time.sleep(POLL)
        return current

    def migrate_to_file(self, path: Path, deadline: float) -> None:
        """Write the stopped VM's state to `path` (QEMU's exec: migration)."""

        self.execute("migrate", uri=f"exec:cat > {quote(str(path))}")
        while True:
            info = self.execute("query-migrate")
            status = info.get("status")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise GuestError(f"saving the guest failed: {info.get('error-desc', status)}")
            if time.monotonic() > deadline:
                raise GuestTimeout("saving the guest did not finish")
            time.sleep(POLL * 4)

    def close(self) -> None:
        for closer in (self._file.close, self._sock.close):
            with contextlib.suppress(OSError):
                closer()


def connect_unix(
    path: Path, deadline: float, what: str, poll: Callable[[], None] | None = None
) -> socket.socket:
    """Connect to a unix socket QEMU creates at start-up, retrying until it exists.
    `poll` raises if QEMU is gone (harness.guest.console): one that died before
    making the socket never will, and waiting out the deadline would cost minutes.
    A socket the host cannot create (no descriptor left, no memory) is the host's
    failure, not the guest's: retrying would not make one."""
    last = "no attempt"
    while True:
        if poll is not None:
            poll()
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:
            raise HostFailure(
                f"cannot start the guest: no socket for {what}: {exc.strerror or exc}"
            ) from None
        try:
            sock.connect(str(path))
            return sock
        except OSError as exc:
            sock.close()
            last = exc.strerror or str(exc)
        if time.monotonic() > deadline:
            raise GuestTimeout(f"{what} did not open: {last}")
        time.sleep(POLL)
