"""`Guest`: one running QEMU guest, driven over its command channel and serial console.

    with Guest(GuestConfig.for_profile(profile)) as guest:
        guest.run("uname -r")             # CommandResult(exit_code, stdout, stderr)

Entering boots the guest (or resumes a saved one: `Guest(config, restore=saved)`)
and waits until its command channel answers; leaving (however it happens) kills
QEMU and removes the guest's temp dir.  Commands and file copies use the command
channel (harness.guest.channel); SSH is connected only for interactive shells.  Any
operation during which the console shows a crash report raises GuestCrashed with
the report, and so does every later one: a guest that crashed once is lost.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from harness.guest.accel import choose_accel, default_cache
from harness.guest.channel import PortShell
from harness.guest.config import GuestConfig
from harness.guest.console import Console
from harness.guest.errors import (
    CommandFailed,
    GuestCrashed,
    GuestError,
    GuestTimeout,
    HostFailure,
    QemuKilled,
    RestoreFailed,
    host_cause,
)
from harness.guest.liveness import Liveness
from harness.guest.qemu import BootSpec, console_log_path, qemu_args
from harness.guest.qmp import QmpClient
from harness.guest.result import CommandResult
from harness.guest.snapshot import SavedGuest
from harness.guest.ssh import (
    HOST_KEY_COMMAND,
    SshSession,
    connect,
    new_key,
    parse_host_key,
    public_key,
    ssh_command_line,
)
from harness.host import reaper
from harness.kernel.profiles import DEFAULT_PROFILE, load_profile

__all__ = ["CommandResult", "Guest", "GuestConfig", "GuestCrashed", "GuestTimeout"]

T = TypeVar("T")
READY_MARKER = r"klp-harness: guest ready"
HOSTFWD_FAILED = "Could not set up host forwarding rule"
PORT_ATTEMPTS = 3


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (QEMU binds it a moment later; a lost
    race shows up as a hostfwd error and is retried with another port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def on_the_host(what: str) -> Iterator[None]:
    """An OSError while making `what` (ENOSPC, EMFILE, ...) is the host's failure."""
    try:
        yield
    except OSError as exc:
        raise HostFailure(f"{what}: {exc.strerror or exc} (on the host)") from None


def _blamed_on_host(exc: GuestCrashed, qemu_said: str) -> GuestError:
    """`exc` (QEMU exited), as a HostFailure when QEMU's last words blame the host
    (a full disk, no descriptors, a socket it could not bind) rather than the guest's
    kernel or its saved state; a crash report or a kill from outside stays as it is."""
    if isinstance(exc, QemuKilled) or exc.crash is not None:
        return exc
    cause = host_cause(qemu_said) or host_cause(exc.excerpt)
    if cause is None:
        return exc
    return HostFailure(f"QEMU could not start on this host: {cause}", exc.excerpt or qemu_said)


class Guest:
    """Owns one QEMU process, its console, its command channel and its temp dir."""

    def __init__(
        self,
        config: GuestConfig,
        restore: SavedGuest | None = None,
        key_file: Path | None = None,
    ) -> None:
        self.config = config
        self.restore = restore
        self.restored = False  # resumed from `restore` (rather than booted)
        self.accel = ""
        self.accel_reason = ""
        self.qemu_cmdline: list[str] = []
        self.console_log = Path()
        self.boot_seconds = 0.0  # QEMU start -> command channel answers
        self.shell_seconds = 0.0  # QEMU start -> serial shell answers (booted guests)
        self.temp_dir: Path | None = None
        self._console: Console | None = None
        self._channel: PortShell | None = None
        self._ssh: SshSession | None = None
        self._key_file = restore.key_file if restore is not None else key_file
        self._port = 0
        self._token: int | None = None
        self.activity = ""  # what the caller is doing with it ("step 2: load lp"), for errors
        # close() may come from another thread while this one starts (a run being
        # stopped): what the start makes after it is discarded, never left running
        self._lock = threading.Lock()
        self._closed = False

    # ---- lifetime -------------------------------------------------------------------------

    def __enter__(self) -> Guest:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        self._token = reaper.register(self.close)
        with on_the_host("the guest's temporary directory"):
            temp_dir = reaper.make_temp_dir()
        self._hold(lambda: setattr(self, "temp_dir", temp_dir),
                   lambda: shutil.rmtree(temp_dir, ignore_errors=True))  # fmt: skip
        accel = choose_accel(self.config.kernel, default_cache(), requested=self.config.accel)
        self.accel, self.accel_reason = accel.name, accel.reason
        if self._key_file is None:
            with on_the_host("the guest's SSH key"):
                self._key_file, pubkey = new_key(temp_dir)
        else:
            try:
                pubkey = public_key(self._key_file)
            except (OSError, ValueError) as exc:  # a snapshot replaced meanwhile
                raise RestoreFailed(f"the saved guest's key: {exc}") from None
        self.console_log = console_log_path(self.config.log_dir, self.config.name, temp_dir)
        for attempt in range(PORT_ATTEMPTS):
            self._port = free_port()
            saved = self.restore.opened() if self.restore else contextlib.nullcontext()
            with saved as incoming:
                boot = BootSpec(self._port, temp_dir, pubkey, accel.args, incoming)
                try:
                    self._start_qemu(boot)
                    return
                except (GuestCrashed, HostFailure) as exc:
                    if HOSTFWD_FAILED not in exc.excerpt or attempt == PORT_ATTEMPTS - 1:
                        raise
                    self._stop_qemu()

    def _start_qemu(self, boot: BootSpec) -> None:
        """Start QEMU, connect the command channel at once (the guest's bash reads
        end-of-file while it is not connected), then boot or resume."""
        self.qemu_cmdline = qemu_args(self.config, boot)
        started = time.monotonic()
        deadline = started + self.config.boot_timeout
        passed = () if boot.incoming is None else (boot.incoming,)
        console = Console(self.qemu_cmdline, self.console_log, reaper.pdeathsig_preexec(), passed)
        self._hold(lambda: setattr(self, "_console", console), console.close)
        try:
            self._channel = PortShell(boot.cmd_socket, boot.err_socket, deadline, console.check)
            if boot.incoming is not None:
                self._resume(boot, deadline)
            else:
                console.wait_for(READY_MARKER, deadline - time.monotonic())
                console.run("true", max(1.0, deadline - time.monotonic()))
                self.shell_seconds = time.monotonic() - started
            self._channel.start(max(1.0, deadline - time.monotonic()))
        except GuestTimeout as exc:
            what = "guest did not resume" if boot.incoming else "guest did not boot"
            raise GuestTimeout(f"{what}: {exc}", console.tail()) from None
        except GuestCrashed as exc:
            raise _blamed_on_host(exc, console.tail(10)) from None
        except GuestError:
            try:
                console.check_lost()  # a socket dropped: QEMU's exit shows a moment later
            except GuestCrashed as exc:
                raise _blamed_on_host(exc, console.tail(10)) from None
            raise
        self.boot_seconds = time.monotonic() - started
        self.restored = boot.incoming is not None
        console.liveness = Liveness(console.pid, boot.qmp_socket, lambda: self.activity).check
        if not self.restored:
            self._check_release()

    def _resume(self, boot: BootSpec, deadline: float) -> None:
        """Wait until QEMU has loaded the saved state, then let the guest run."""
        console = self._live_console()
        try:
            with QmpClient(boot.qmp_socket, deadline, console.check) as qmp:
                state = qmp.wait_status_not("inmigrate", deadline)
                if state not in ("paused", "running", "prelaunch"):
                    raise RestoreFailed(f"QEMU did not load the saved guest (state {state})")
                qmp.execute("cont")
        except GuestError as exc:
            if isinstance(exc, RestoreFailed):
                raise
            try:
                console.check_lost()  # QEMU's exit shows a moment after its sockets close
            except QemuKilled:
                raise  # killed from outside: the saved state is not to blame
            except GuestCrashed as crashed:
                if host_cause(console.tail(10)) is not None:
                    raise _blamed_on_host(crashed, console.tail(10)) from None
                raise RestoreFailed(
                    f"QEMU could not load the saved guest: {console.qemu_exit()}",
                    console.tail(10),
                ) from None
            raise

    def _check_release(self) -> None:
        if self.config.release:
            got = self.run("uname -r", check=True).stdout.strip()
            if got != self.config.release:
                raise GuestError(f"guest runs {got}, expected {self.config.release}")

    def _stop_qemu(self) -> None:
        if self._ssh is not None:
            with contextlib.suppress(Exception):
                self._ssh.close()
            self._ssh = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._console is not None:
            self._console.close()
            self._console = None

    def _hold(self, keep: Callable[[], None], discard: Callable[[], None]) -> None:
        """Keep what the start just made (`keep`), unless close() came first: then
        discard it and fail the start (a QEMU kept after close() would run on, and
        the start wait for sockets close() removed)."""
        with self._lock:
            if not self._closed:
                keep()
                return
        discard()
        raise GuestError("the guest was stopped while it started")

    def close(self) -> None:
        """Kill QEMU, drop the temp dir.  Idempotent; safe on a half-started guest,
        from any thread: what a start makes after it is not kept (`_hold`)."""
        with self._lock:
            self._closed = True
        self._stop_qemu()
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None
        if self._token is not None:
            reaper.unregister(self._token)
            self._token = None

    # ---- state ----------------------------------------------------------------------------

    @property
    def qemu_pid(self) -> int:
        return self._live_console().pid

    @property
    def qmp_socket(self) -> Path:
        """QEMU's QMP socket (harness.guest.qmp), e.g. for `stop` and `migrate`."""
        assert self.temp_dir is not None
        return self.temp_dir / "qmp.sock"

    @property
    def key_file(self) -> Path:
        """The SSH private key the guest authorizes for root."""
        assert self._key_file is not None
        return self._key_file

    def _live_console(self) -> Console:
        if self._console is None:
            raise GuestError("the guest is not running")
        return self._console

    def _live_channel(self) -> PortShell:
        self._live_console()
        if self._channel is None:
            raise GuestError("the guest is not running")
        return self._channel

    def _live_ssh(self) -> SshSession:
        """SSH, connected on first use (and again if the connection dropped), the
        guest's host key checked against the one read over the command channel (a
        local QEMU socket, so it cannot be spoofed).  A guest whose dropbear is gone
        is told at once: connecting would retry for a minute."""
        console = self._live_console()
        if self._ssh is not None and not self._ssh.transport.is_active():
            self._ssh.close()
            self._ssh = None
        if self._ssh is None:
            if self.run("pgrep -x dropbear >/dev/null").exit_code != 0:
                raise GuestError("the guest's SSH server (dropbear) is not running")
            host_key = self.host_key()
            deadline = time.monotonic() + 60
            transport = connect(self._port, self.key_file, deadline, console.check, host_key)
            self._ssh = SshSession(transport, console.check)
        return self._ssh

    def host_key(self) -> str:
        """The guest's SSH host key ("ssh-ed25519 AAAA..."), read over the channel."""
        return parse_host_key(self.run(HOST_KEY_COMMAND, check=True).stdout)

    def check_alive(self) -> None:
        """Raise GuestCrashed (with the report) if the guest crashed or QEMU died."""
        self._live_console().check()

    def _guarded(self, what: str, exc: Exception) -> GuestError:
        """Turn a transport failure into GuestCrashed if the guest is gone (QEMU's
        exit shows a moment after its sockets close: wait briefly for it)."""
        self._live_console().check_lost()
        return GuestError(f"{what}: {exc}")

    # ---- commands -------------------------------------------------------------------------

    def run(self, cmd: str, timeout: float = 30.0, check: bool = False) -> CommandResult:
        """Run a shell command on the command channel (bash, stdin /dev/null, own
        subshell).  A command that times out is killed with all it started."""
        result = self._on_channel(f"`{cmd}`", lambda channel: channel.run(cmd, timeout))
        if check and result.exit_code != 0:
            raise CommandFailed(cmd, result)
        return result

    def feed(
        self, local: Path, cmd: str, timeout: float = 120.0, check: bool = False
    ) -> CommandResult:
        """Run `cmd` with the bytes of the host file `local` on its stdin."""
        result = self._on_channel(f"`{cmd}`", lambda channel: channel.feed(local, cmd, timeout))
        if check and result.exit_code != 0:
            raise CommandFailed(cmd, result)
        return result

    def put_file(self, local: Path, remote: str) -> None:
        """Copy a host file to `remote` in the guest."""
        self._on_channel(f"copying {local}", lambda channel: channel.put_file(Path(local), remote))

    def _on_channel(self, what: str, use: Callable[[PortShell], T]) -> T:
        """Use the channel; a lost guest raises GuestCrashed, a timed-out command is
        killed (the guest stays usable), a broken channel is one GuestError."""
        channel = self._live_channel()
        self.check_alive()
        try:
            result = use(channel)
        except (GuestCrashed, HostFailure):  # lost or frozen: named as such
            raise
        except GuestTimeout as timed_out:
            self.check_alive()
            try:
                self._kill_stuck(channel)
            except GuestError as exc:  # the cleanup's failure must not hide the step's
                raise GuestTimeout(
                    f"{timed_out}; stopping it failed too: {exc}", timed_out.excerpt
                ) from None
            raise
        except (GuestError, OSError) as exc:
            raise self._guarded(what, exc) from exc
        self.check_alive()
        return result

    def _kill_stuck(self, channel: PortShell) -> None:
        """Kill the channel's bash session from the serial console; init starts a
        new bash, and the channel skips what the old one left behind.  Nothing is
        sent before the whole session is gone: what reaches the port while the old
        bash still holds it is discarded with it."""
        session = channel.session
        self._live_console().run(
            f"pkill -KILL -s {session}; i=0; while pgrep -s {session} >/dev/null && "
            f"[ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; true",
            30.0,
        )
        channel.resync()

    def run_serial(self, cmd: str, timeout: float = 30.0, check: bool = False) -> CommandResult:
        """Run a shell command on the serial console (works when SSH does not)."""
        result = self._live_console().run(cmd, timeout)
        if check and result.exit_code != 0:
            raise CommandFailed(cmd, result)
        return result

    def save(self, state: Path, timeout: float = 120.0) -> None:
        """Save the guest's whole state to `state` (stopped meanwhile, then resumed),
        for `Guest(config, restore=SavedGuest(state, guest.key_file))`.  Nothing may
        run on the command channel meanwhile."""
        self.check_alive()
        deadline = time.monotonic() + timeout
        with QmpClient(self.qmp_socket, deadline) as qmp:
            qmp.execute("stop")
            try:
                qmp.migrate_to_file(state, deadline)
            finally:
                qmp.execute("cont")
        self.check_alive()

    def interactive(self, serial: bool = False) -> None:
        """Give the user's terminal a root shell in the guest until they exit it
        (serial: the console, left with Ctrl-]).  Crash reports are announced but do
        not end the session."""
        if serial:
            self._live_console().interact()
            return
        console = self._live_console()

        def crash_note() -> str | None:
            crash = console.watcher.crash
            return f"guest crashed: {crash.summary}" if crash else None

        self._live_ssh().interactive(crash_note)

    def ssh_command(self) -> str:
        """A command line to reach the guest from another terminal while it runs; the
        guest's host key is pinned in a known_hosts file of the guest's own."""
        assert self.temp_dir is not None
        known_hosts = self.temp_dir / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{self._port} {self.host_key()}\n")
        return ssh_command_line(self._port, self.key_file, known_hosts)


def main(argv: list[str]) -> int:
    """`python -m harness.guest.vm [PROFILE]`: boot, print timings, open a shell."""

    profile = load_profile(argv[0] if argv else DEFAULT_PROFILE)
    with Guest(GuestConfig.for_profile(profile)) as guest:
        print(f"{profile.name}: {guest.accel}, shell {guest.shell_seconds:.1f} s, "
              f"ssh {guest.boot_seconds:.1f} s; {guest.ssh_command()}")  # fmt: skip
        guest.interactive()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
