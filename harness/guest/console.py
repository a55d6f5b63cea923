"""QEMU's serial console: the guest's first shell and the harness's crash detector.

QEMU runs under pexpect with the guest's ttyS0 on its stdio.  Everything the
console prints goes, as it arrives, to the console log and to a `CrashWatcher`.
The console must be read continuously even while the harness talks SSH: a serial
port nobody reads slows every printk in the guest and loses crash reports.  So a
background thread drains it whenever no command is being run on it; `run`,
`wait_for` and `interact` take the same lock and read it themselves.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import select
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import pexpect

from harness.guest.crash import CrashWatcher
from harness.guest.errors import GuestCrashed, GuestError, GuestTimeout
from harness.guest.result import CommandResult

POLL = 0.1  # how often blocking console reads look at the crash watcher
CRASH_SETTLE = 3.0  # how long to wait for the rest of a crash report
# The tty's line discipline holds at most 4095 characters of an unfinished line.
MAX_SERIAL_COMMAND = 3500


class _Tee:
    """pexpect's `logfile_read`: console text to the log file and the watcher."""

    def __init__(self, log: TextIO, watcher: CrashWatcher) -> None:
        self.log = log
        self.watcher = watcher

    def write(self, data: str | bytes) -> None:
        # Text from reads; bytes from pexpect's interact(), which bypasses decoding.
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        self.log.write(text.replace("\r", ""))
        self.watcher.feed(text)

    def flush(self) -> None:
        self.log.flush()


class Console:
    """Owns the QEMU process (through pexpect) and its serial console."""

    def __init__(self, argv: list[str], log_path: Path, preexec: Callable[[], None]) -> None:
        self.watcher = CrashWatcher()
        self._log = log_path.open("w", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.ended = threading.Event()  # QEMU's console closed: QEMU exited
        try:
            self._child = pexpect.spawn(
                argv[0],
                argv[1:],
                timeout=None,
                maxread=65536,
                encoding="utf-8",
                codec_errors="replace",
                preexec_fn=preexec,
                dimensions=(24, 200),
            )
        except pexpect.ExceptionPexpect as exc:
            self._log.close()
            raise GuestError(f"cannot start {argv[0]}: {exc} (run `make setup`)") from exc
        self._child.delaybeforesend = None  # its default 50 ms per send dominates latency
        self._child.logfile_read = _Tee(self._log, self.watcher)
        self._thread = threading.Thread(target=self._drain, name="klp-console", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int:
        return int(self._child.pid)

    # ---- background draining ------------------------------------------------------------

    def _drain(self) -> None:
        """Read the console whenever nobody else does, until QEMU exits."""
        fd = self._child.child_fd
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], POLL)
            except (OSError, ValueError):
                break
            if not ready:
                continue
            with self._lock:
                if self._stop.is_set():
                    break
                self._read_once(0)
            if self.ended.is_set():
                break

    def _read_once(self, timeout: float) -> None:
        """Read what is there (waiting up to `timeout`); notice QEMU's exit.  Called
        with the lock held."""
        try:
            self._child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            pass
        except (pexpect.EOF, OSError, ValueError):
            self._mark_ended()

    def _mark_ended(self) -> None:
        if not self.ended.is_set():
            self.watcher.finish()
            self._log.flush()
            self.ended.set()

    # ---- state ---------------------------------------------------------------------------

    def check(self) -> None:
        """Raise GuestCrashed if a crash report was seen or QEMU exited."""
        if self.watcher.crash is not None or self.ended.is_set():
            self.raise_lost()

    def raise_lost(self) -> None:
        """Wait briefly for the whole crash report, then raise GuestCrashed."""
        self.watcher.settled.wait(CRASH_SETTLE)
        crash = self.watcher.crash
        if crash is not None:
            raise GuestCrashed(f"guest crashed: {crash.summary}", crash.excerpt)
        status = self._child.exitstatus if not self._child.isalive() else None
        raise GuestCrashed(f"QEMU exited unexpectedly (status {status})", self.tail())

    def tail(self, lines: int = 30) -> str:
        """The end of the console log, for error messages."""
        self._log.flush()
        try:
            text = Path(self._log.name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ---- reading and commands ----------------------------------------------------------

    def _expect(self, pattern: re.Pattern[str], deadline: float, what: str) -> re.Match[str]:
        """Wait for `pattern` (lock held), watching for crashes and QEMU's exit."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GuestTimeout(f"{what}: no answer on the serial console")
            try:
                self._child.expect([pattern], timeout=min(POLL, left))
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                self._mark_ended()
            else:
                match = self._child.match
                assert isinstance(match, re.Match)
                if self.watcher.crash is None:
                    return match
            if self.watcher.crash is not None or self.ended.is_set():
                return self._lost_while_locked()

    def _lost_while_locked(self) -> re.Match[str]:
        """Keep reading for the rest of a crash report, then raise (lock held, so the
        drain thread cannot do the reading)."""
        deadline = time.monotonic() + CRASH_SETTLE
        while not self.watcher.settled.is_set() and not self.ended.is_set():
            if time.monotonic() > deadline:
                break
            self._read_once(POLL)
        self.raise_lost()
        raise AssertionError("unreachable")  # pragma: no cover

    def wait_for(self, pattern: str, timeout: float) -> str:
        """Wait until the console prints `pattern`; returns the text matched."""
        with self._lock:
            self._child.buffer = ""
            match = self._expect(re.compile(pattern), time.monotonic() + timeout, pattern)
            return match.group(0)

    def run(self, cmd: str, timeout: float) -> CommandResult:
        """Run `cmd` in the console's shell (through __klp_serial in the guest's
        /etc/klp-harness.sh).  Kernel messages printed meanwhile land in stdout."""
        if len(cmd) > MAX_SERIAL_COMMAND:
            raise GuestError(f"serial commands are limited to {MAX_SERIAL_COMMAND} characters")
        nonce = secrets.token_hex(8)
        end = re.compile(rf"{nonce}:end (\d+)\r*\n")
        self.check()
        with self._lock:
            self._child.buffer = ""
            # Leading space: kept out of the shell's history (HISTCONTROL=ignorespace).
            self._child.sendline(f" __klp_serial {nonce} {shlex.quote(cmd)}")
            try:
                match = self._expect(end, time.monotonic() + timeout, f"`{cmd}`")
            except GuestTimeout:
                self._child.sendcontrol("c")  # SIGINT to the job, as a user would
                raise
            text = str(self._child.before).replace("\r", "")
        return _parse_serial(text, nonce, int(match.group(1)))

    def interact(self) -> None:
        """Hand the console to the user's terminal until they type Ctrl-].  The log
        and the crash watcher keep getting everything."""
        print("klp-harness: serial console; Ctrl-] returns", file=sys.stderr)
        with self._lock:
            self._child.sendline("")
            with contextlib.suppress(OSError):
                self._child.interact(escape_character=chr(29))

    # ---- teardown --------------------------------------------------------------------------

    def close(self) -> None:
        """Kill QEMU and stop reading.  Idempotent."""
        self._stop.set()
        with contextlib.suppress(OSError):
            if self._child.isalive():
                self._child.kill(signal.SIGKILL)
        with contextlib.suppress(Exception):
            self._child.close(force=True)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * POLL + 1)
        self._mark_ended()
        self._log.close()

    def is_running(self) -> bool:
        return bool(self._child.isalive())


def _parse_serial(text: str, nonce: str, exit_code: int) -> CommandResult:
    """Split what __klp_serial printed into stdout and stderr."""
    begin = f"{nonce}:begin\n"
    start = text.find(begin)
    body = text[start + len(begin) :] if start >= 0 else text
    stdout, _, stderr = body.partition(f"\n{nonce}:stderr\n")
    return CommandResult(exit_code, stdout, stderr.removesuffix("\n"))
