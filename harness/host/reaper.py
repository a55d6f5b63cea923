"""Make sure no QEMU, no build and no temporary directory outlives the harness.

Four layers, because each covers exits the others miss:
- context managers (`with Guest(...)`) for normal returns and exceptions, including
  KeyboardInterrupt from Ctrl-C;
- SIGTERM and SIGHUP become SystemExit, so the same `finally` blocks run;
- an atexit hook tears down whatever is still registered;
- QEMU gets a parent-death signal (PR_SET_PDEATHSIG), so even a SIGKILLed harness
  leaves no QEMU; the temporary directories such a death leaves are swept by the
  next guest (their names carry the owner's pid).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from harness.files import sweep_abandoned

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
TEMP_PREFIX = "klp-guest-"

_libc = ctypes.CDLL(None, use_errno=True)
_teardowns: dict[int, Callable[[], None]] = {}
_lock = threading.Lock()
_installed = False


def pdeathsig_preexec(signum: int = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` that has the child sent `signum` (SIGKILL for QEMU; SIGTERM for
    make, which passes it on to the compilers it started) when the harness dies.

    The kernel sends the signal when the *thread* that forked the child exits, so a
    guest should be started from a thread that lives as long as the guest (the main
    thread, normally).  The parent check closes the race where the parent died
    between fork and prctl."""
    parent = os.getpid()
    prctl = _libc.prctl

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def register(teardown: Callable[[], None]) -> int:
    """Run `teardown` at interpreter exit unless `unregister`ed first."""
    install()
    with _lock:
        token = id(teardown)
        _teardowns[token] = teardown
    return token


def unregister(token: int) -> None:
    with _lock:
        _teardowns.pop(token, None)


def _teardown_all() -> None:
    with _lock:
        pending = list(_teardowns.values())
        _teardowns.clear()
    for teardown in pending:
        with contextlib.suppress(Exception):
            teardown()


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def install() -> None:
    """Install the atexit hook and, from the main thread, turn SIGTERM/SIGHUP into
    SystemExit; a handler someone else installed is left alone."""
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(_teardown_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _exit_on_signal)


def make_temp_dir() -> Path:
    """A private directory for one guest: keys, sockets, console log."""
    sweep_stale_dirs()
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))


def sweep_stale_dirs() -> None:
    """Remove guest directories whose owning process no longer exists (it was
    SIGKILLed, so its own cleanup never ran)."""
    sweep_abandoned(Path(tempfile.gettempdir()), TEMP_PREFIX.removesuffix("-"))


def wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
    """Wait until no process of the group is left.  SIGKILL takes effect when a
    process leaves the system call it is in, so a killed compiler may still create a
    file in its work directory after make is reaped; removing the directory before
    that would leave it behind.  Bounded: a zombie nobody reaps still counts.  The
    bound is generous, as it costs only when the group lingers: with 5 s a build
    directory was still left behind once under a load average of 6-8."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except OSError:
            return
        time.sleep(0.01)
