"""QEMU's serial console: the guest's first shell and the harness's crash detector.

QEMU runs under pexpect with the guest's ttyS0 on its stdio.  Everything the
console prints goes, as it arrives, to the console log and to a `CrashWatcher`.
The console must be read continuously even while the harness talks SSH: a serial
port nobody reads slows every printk in the guest and loses crash reports.  So a
background thread drains it whenever no command is being run on it; `run`,
`wait_for` and `interact` take the same lock and read it themselves.

QEMU is waited for (reaped) in one place only: pexpect, always under that lock.
Everything else learns whether and how QEMU ended from a pidfd, with `waitid(...,
WNOWAIT)`, which looks without reaping: two threads reaping the same child is what
made pexpect raise "did someone else call waitpid()" when QEMU was killed.
"""

from __future__ import annotations

import contextlib
import os
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
from typing import NoReturn, TextIO

import pexpect

from harness.guest.crash import Crash, CrashWatcher
from harness.guest.errors import (
    GuestCrashed,
    GuestError,
    GuestTimeout,
    HostFailure,
    QemuKilled,
)
from harness.guest.result import CommandResult
from harness.guest.spawn import spawn_qemu
from harness.guest.stall import CpuHistory, GuestStarved, host_starved

POLL = 0.1  # how often blocking console reads look at the crash watcher
CRASH_SETTLE = 3.0  # how long to wait for the rest of a crash report
CLOSE_WAIT = 5.0  # how long close() waits for a reader to let go of the console
# A dead QEMU's sockets close a moment before its exit is visible: how long a caller
# whose connection dropped waits for the console to say why.
LOST_GRACE = 1.0
# The tty's line discipline holds at most 4095 characters of an unfinished line.
MAX_SERIAL_COMMAND = 3500
# Signals QEMU gets only from another process (a user, the OOM killer, a supervisor),
# unlike SIGSEGV or SIGABRT, which QEMU may raise itself.
OUTSIDE_SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Tee:
    """pexpect's `logfile_read`: console text to the log file and the watcher."""

    def __init__(self, log: TextIO, watcher: CrashWatcher) -> None:
        self.log = log
        self.watcher = watcher

    def write(self, data: str | bytes) -> None:
        # Text from reads; bytes from pexpect's interact(), which bypasses decoding.
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        self.watcher.feed(text)  # first: a full disk must not blind the crash watcher
        with contextlib.suppress(OSError, ValueError):  # disk full, log closed
            self.log.write(text.replace("\r", ""))

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.log.flush()


def describe_exit(code: int, status: int) -> str:
    """waitid()'s (si_code, si_status) as one phrase: "QEMU exited (signal 9, SIGKILL)"."""
    if code in (os.CLD_KILLED, os.CLD_DUMPED):
        try:
            name = signal.Signals(status).name
        except ValueError:
            name = "?"
        return f"QEMU exited (signal {status}, {name})"
    return f"QEMU exited (status {status})"


def crash_message(crash: Crash) -> str:
    """The one-line reason for a crash report: fatal ones crashed the guest."""
    if crash.fatal:
        return f"guest crashed: {crash.summary}"
    return f"kernel report: {crash.summary}"


class Console:
    """Owns the QEMU process (through pexpect) and its serial console."""

    def __init__(
        self,
        argv: list[str],
        log_path: Path,
        preexec: Callable[[], None],
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self.watcher = CrashWatcher()
        try:
            self._log = log_path.open("w", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise HostFailure(f"the console log {log_path}: {exc.strerror or exc}") from None
        # Reentrant: raise_lost() reads the rest of a report with or without it held.
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._exit: str | None = None  # how QEMU ended, once known
        self._signal: int | None = None  # the signal that ended it, if one did
        self.ended = threading.Event()  # QEMU's console closed: QEMU exited
        # Raises if QEMU is frozen (harness.guest.liveness), set once the guest runs.
        self.liveness: Callable[[], None] | None = None
        try:
            self._child = spawn_qemu(argv, preexec, pass_fds)
        except pexpect.ExceptionPexpect as exc:
            self._log.close()
            raise HostFailure(f"cannot start {argv[0]}: {exc} (run `make setup`)") from None
        except OSError as exc:  # no pty or descriptor left (EMFILE, ENFILE), no memory
            self._log.close()
            raise HostFailure(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
        self._pidfd = _pidfd_open(self.pid)
        self.cpu = CpuHistory(self.pid)  # QEMU's CPU time, to tell a host stall (stall.py)
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
            self.cpu.sample()
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
        except (pexpect.ExceptionPexpect, OSError, ValueError):
            self._mark_ended()

    def _mark_ended(self) -> None:
        if not self.ended.is_set():
            self.qemu_exit()  # pexpect may just have reaped QEMU: keep its status
            self.watcher.finish()
            _Tee(self._log, self.watcher).flush()
            self.ended.set()

    # ---- state ---------------------------------------------------------------------------

    def qemu_exit(self) -> str | None:
        """How QEMU ended ("QEMU exited (signal 9, SIGKILL)"), or None while it runs.
        Looks without reaping, so it is safe from any thread at any time."""
        if self._exit is not None:
            return self._exit
        reaped = self._pidfd is None
        if self._pidfd is not None:
            try:
                info = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # pexpect reaped it (under the lock)
                reaped = True
            except OSError:
                reaped = True
            else:
                if info is None:
                    return None
                if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
                    self._signal = info.si_status
                self._exit = describe_exit(info.si_code, info.si_status)
                return self._exit
        if reaped and self._child.terminated:
            if self._child.signalstatus is not None:
                self._signal = int(self._child.signalstatus)
                self._exit = describe_exit(os.CLD_KILLED, self._signal)
            else:
                self._exit = describe_exit(os.CLD_EXITED, int(self._child.exitstatus or 0))
            return self._exit
        return "QEMU exited" if reaped and self.ended.is_set() else None

    def is_running(self) -> bool:
        return self.qemu_exit() is None and not self.ended.is_set()

    def killed_from_outside(self) -> bool:
        """QEMU ended by a signal only another process sends (OUTSIDE_SIGNALS), not
        by failing on its own (an exit status, SIGSEGV, SIGABRT)."""
        return self.qemu_exit() is not None and self._signal in OUTSIDE_SIGNALS

    def check(self) -> None:
        """Raise GuestCrashed if a crash report was seen or QEMU exited, GuestFrozen
        if QEMU no longer runs the guest."""
        if self.watcher.crash is not None or self.ended.is_set() or self.qemu_exit():
            self.raise_lost()
        if self.liveness is not None:
            self.liveness()

    def check_lost(self, grace: float = LOST_GRACE) -> None:
        """For a caller whose connection to the guest just dropped: wait up to `grace`
        for QEMU's exit or a crash report to become visible, and raise GuestCrashed
        naming it; returns if neither shows (then the connection itself failed)."""
        deadline = time.monotonic() + grace
        while True:
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._pidfd is None:
                time.sleep(min(POLL / 2, left))
                continue
            with contextlib.suppress(OSError, ValueError):
                select.select([self._pidfd], [], [], min(POLL / 2, left))

    def _await_exit(self, grace: float) -> str | None:
        """`qemu_exit()`, waiting up to `grace` for it to show."""
        deadline = time.monotonic() + grace
        while (exited := self.qemu_exit()) is None and (left := deadline - time.monotonic()) > 0:
            if self._pidfd is None:
                time.sleep(min(POLL / 2, left))
                continue
            with contextlib.suppress(OSError, ValueError):
                select.select([self._pidfd], [], [], min(POLL / 2, left))
        return exited

    def raise_lost(self) -> NoReturn:
        """Read the rest of a crash report (or QEMU's last words), then raise
        GuestCrashed naming what happened in one line."""
        self._collect_rest()
        crash = self.watcher.crash
        # QEMU's console closes a moment before its exit shows: wait for the cause.
        exited = self._await_exit(LOST_GRACE if self.ended.is_set() else 0.0)
        if crash is not None and (crash.fatal or exited is None):
            starved = self._starved(crash)
            if starved is not None:
                raise GuestStarved(starved, crash.excerpt)
            raise GuestCrashed(crash_message(crash), crash.excerpt, crash, crash.fatal)
        if exited is None:
            exited = "QEMU closed the serial console"
        qemu_said = [ln for ln in self.tail(10).splitlines() if ln.startswith("qemu-system")]
        reason = f"{exited}: {qemu_said[-1]}" if qemu_said else exited
        if crash is not None:  # a non-fatal report, then QEMU died
            reason += f", after a {crash_message(crash)}"
        lost = QemuKilled if self.killed_from_outside() else GuestCrashed
        raise lost(reason, crash.excerpt if crash else self.tail(), crash, True)

    def _starved(self, crash: Crash) -> str | None:
        """Why a stall report is the host's doing (QEMU did not run), or None."""
        counted = crash.stuck_seconds
        if counted is None:
            return None
        why = host_starved(self.cpu, counted)
        return f"{why}; the kernel's report: {crash.line}" if why else None

    def _collect_rest(self) -> None:
        """Keep reading, up to CRASH_SETTLE, until the crash report is complete or
        QEMU's console has closed, so the log and the excerpt hold all of it."""
        exited = self.qemu_exit() is not None
        if not self._lock.acquire(timeout=CRASH_SETTLE):
            return  # someone holds the console (interact()): report what we have
        try:
            deadline = time.monotonic() + CRASH_SETTLE
            while not self.ended.is_set() and time.monotonic() < deadline:
                crash = self.watcher.crash
                if not exited and crash is not None and crash.complete:
                    break
                self._read_once(POLL)
                exited = exited or self.qemu_exit() is not None
        finally:
            self._lock.release()

    def tail(self, lines: int = 30) -> str:
        """The end of the console log, for error messages."""
        _Tee(self._log, self.watcher).flush()
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
            except (pexpect.ExceptionPexpect, OSError, ValueError):
                self._mark_ended()
            else:
                match = self._child.match
                assert isinstance(match, re.Match)
                if self.watcher.crash is None:
                    return match
            if self.watcher.crash is not None or self.ended.is_set():
                self.raise_lost()
            if self.liveness is not None:
                self.liveness()

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
            try:
                # Leading space: kept out of the shell's history (HISTCONTROL=ignorespace).
                self._child.sendline(f" __klp_serial {nonce} {shlex.quote(cmd)}")
            except OSError:
                self._mark_ended()
                self.raise_lost()
            try:
                match = self._expect(end, time.monotonic() + timeout, f"`{cmd}`")
            except GuestTimeout:
                with contextlib.suppress(OSError):
                    self._child.sendcontrol("c")  # SIGINT to the job, as a user would
                raise
            text = str(self._child.before).replace("\r", "")
        return _parse_serial(text, nonce, int(match.group(1)))

    def interact(self) -> None:
        """Hand the console to the user's terminal until they type Ctrl-].  The log
        and the crash watcher keep getting everything."""
        print("klp-harness: serial console; Ctrl-] returns", file=sys.stderr)
        with self._lock, contextlib.suppress(OSError, pexpect.ExceptionPexpect):
            self._child.sendline("")
            self._child.interact(escape_character=chr(29))

    # ---- teardown --------------------------------------------------------------------------

    def close(self) -> None:
        """Kill QEMU, reap it, stop reading.  Idempotent, and never raises: it runs
        in `finally` blocks and exit hooks, often after QEMU already died."""
        self._stop.set()
        self._kill()
        if self._lock.acquire(timeout=CLOSE_WAIT):  # readers see EOF and let go
            try:
                if self._exited(CLOSE_WAIT):  # then pexpect need not sleep 0.1 s first
                    self._child.ptyproc.delayafterclose = 0.0
                with contextlib.suppress(Exception):
                    self._child.close(force=True)  # the one place QEMU is reaped
            finally:
                self._lock.release()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * POLL + 1)
        with contextlib.suppress(Exception):
            self._mark_ended()
        with contextlib.suppress(OSError):
            self._log.close()
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None

    def _exited(self, timeout: float) -> bool:
        """Wait (up to `timeout`) until QEMU has exited, without reaping it; False
        when there is no pidfd to wait on."""
        if self._pidfd is None:
            return False
        with contextlib.suppress(OSError):
            ready, _, _ = select.select([self._pidfd], [], [], timeout)
            return bool(ready)
        return False

    def _kill(self) -> None:
        """SIGKILL QEMU through its pidfd: never a reused pid, and no reaping."""
        with contextlib.suppress(OSError):
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            elif not self._child.terminated:
                os.kill(self.pid, signal.SIGKILL)


def _pidfd_open(pid: int) -> int | None:
    """A pidfd for QEMU (Linux 5.3+), or None: then exit is noticed on the console."""
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def _parse_serial(text: str, nonce: str, exit_code: int) -> CommandResult:
    """Split what __klp_serial printed into stdout and stderr."""
    begin = f"{nonce}:begin\n"
    start = text.find(begin)
    body = text[start + len(begin) :] if start >= 0 else text
    stdout, _, stderr = body.partition(f"\n{nonce}:stderr\n")
    return CommandResult(exit_code, stdout, stderr.removesuffix("\n"))
