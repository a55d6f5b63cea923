"""`Guest`: one running QEMU guest, driven over SSH and the serial console.

    with Guest(GuestConfig.for_profile(profile)) as guest:
        guest.run("uname -r")             # CommandResult(exit_code, stdout, stderr)

Entering boots the guest and waits until both its serial shell and SSH answer;
leaving (however it happens) kills QEMU and removes the guest's temp dir.  Any
operation during which the console shows a crash report raises GuestCrashed with
the report, and so does every later one: a guest that crashed once is lost.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from paramiko import SSHException

from harness.guest import reaper
from harness.guest.accel import choose_accel, default_cache
from harness.guest.config import BootSpec, GuestConfig, qemu_args
from harness.guest.console import Console
from harness.guest.errors import CommandFailed, GuestCrashed, GuestError, GuestTimeout
from harness.guest.result import CommandResult
from harness.guest.ssh import SshSession, connect, new_key

__all__ = ["CommandResult", "Guest", "GuestConfig", "GuestCrashed", "GuestTimeout"]

READY_MARKER = r"klp-harness: guest ready"
HOSTFWD_FAILED = "Could not set up host forwarding rule"
PORT_ATTEMPTS = 3


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (QEMU binds it a moment later; a lost
    race shows up as a hostfwd error and is retried with another port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Guest:
    """Owns one QEMU process, its console, its SSH session and its temp dir."""

    def __init__(self, config: GuestConfig) -> None:
        self.config = config
        self.accel = ""
        self.accel_reason = ""
        self.qemu_cmdline: list[str] = []
        self.console_log = Path()
        self.boot_seconds = 0.0  # QEMU start -> SSH shell answers
        self.shell_seconds = 0.0  # QEMU start -> serial shell answers
        self.temp_dir: Path | None = None
        self._console: Console | None = None
        self._ssh: SshSession | None = None
        self._key_file = Path()
        self._port = 0
        self._token: int | None = None

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
        self.temp_dir = reaper.make_temp_dir()
        accel = choose_accel(self.config.kernel, default_cache(), requested=self.config.accel)
        self.accel, self.accel_reason = accel.name, accel.reason
        self._key_file, pubkey = new_key(self.temp_dir)
        self.console_log = self._console_log_path()
        for attempt in range(PORT_ATTEMPTS):
            self._port = free_port()
            boot = BootSpec(self._port, self.temp_dir / "monitor.sock", pubkey, accel.args)
            try:
                self._boot(boot)
                return
            except GuestCrashed as exc:
                if HOSTFWD_FAILED not in exc.excerpt or attempt == PORT_ATTEMPTS - 1:
                    raise
                self._stop_qemu()

    def _console_log_path(self) -> Path:
        if self.config.log_dir is None:
            assert self.temp_dir is not None
            return self.temp_dir / "console.log"
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            path = self.config.log_dir / f"console-{self.config.name}-{stamp}-{n}.log"
            if not path.exists():
                return path
        raise GuestError(f"no free console log name in {self.config.log_dir}")

    def _boot(self, boot: BootSpec) -> None:
        """Start QEMU and wait for the serial shell, then for SSH."""
        self.qemu_cmdline = qemu_args(self.config, boot)
        started = time.monotonic()
        deadline = started + self.config.boot_timeout
        self._console = Console(self.qemu_cmdline, self.console_log, reaper.pdeathsig_preexec())
        try:
            self._console.wait_for(READY_MARKER, deadline - time.monotonic())
            self._console.run("true", max(1.0, deadline - time.monotonic()))
        except GuestTimeout as exc:
            raise GuestTimeout(f"guest did not boot: {exc}", self._console.tail()) from None
        self.shell_seconds = time.monotonic() - started
        try:
            transport = connect(self._port, self._key_file, deadline, self._console.check)
        except GuestTimeout as exc:
            raise GuestTimeout(str(exc), self._console.tail()) from None
        self._ssh = SshSession(transport, self._console.check)
        self._ssh.shell()
        self.boot_seconds = time.monotonic() - started
        self._check_release()

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
        if self._console is not None:
            self._console.close()
            self._console = None

    def close(self) -> None:
        """Kill QEMU, drop the temp dir.  Idempotent; safe on a half-started guest."""
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
    def monitor_socket(self) -> Path:
        """QEMU's HMP monitor (unix socket), e.g. for `stop` and `migrate`."""
        assert self.temp_dir is not None
        return self.temp_dir / "monitor.sock"

    def _live_console(self) -> Console:
        if self._console is None:
            raise GuestError("the guest is not running")
        return self._console

    def _live_ssh(self) -> SshSession:
        self._live_console()
        if self._ssh is None:
            raise GuestError("the guest is not running")
        return self._ssh

    def check_alive(self) -> None:
        """Raise GuestCrashed (with the report) if the guest crashed or QEMU died."""
        self._live_console().check()

    def _guarded(self, what: str, exc: Exception) -> GuestError:
        """Turn a transport failure into GuestCrashed if the guest is gone."""
        self.check_alive()
        return GuestError(f"{what}: {exc}")

    # ---- commands -------------------------------------------------------------------------

    def run(self, cmd: str, timeout: float = 30.0, check: bool = False) -> CommandResult:
        """Run a shell command over SSH (bash, stdin /dev/null, own subshell)."""
        ssh = self._live_ssh()
        self.check_alive()
        try:
            result = ssh.run(cmd, timeout)
        except GuestCrashed:
            raise
        except GuestTimeout:
            self.check_alive()
            raise
        except (GuestError, OSError, EOFError, SSHException) as exc:
            raise self._guarded(f"`{cmd}`", exc) from exc
        self.check_alive()
        if check and result.exit_code != 0:
            raise CommandFailed(cmd, result)
        return result

    def run_serial(self, cmd: str, timeout: float = 30.0, check: bool = False) -> CommandResult:
        """Run a shell command on the serial console (works when SSH does not)."""
        result = self._live_console().run(cmd, timeout)
        if check and result.exit_code != 0:
            raise CommandFailed(cmd, result)
        return result

    def put_file(self, local: Path, remote: str) -> None:
        """Copy a host file to `remote` in the guest."""
        ssh = self._live_ssh()
        self.check_alive()
        try:
            ssh.put_file(Path(local), remote)
        except GuestCrashed:
            raise
        except (GuestError, OSError, EOFError, SSHException) as exc:
            raise self._guarded(f"copying {local}", exc) from exc
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
        """A command line to reach the guest from another terminal while it runs."""
        return shlex.join([
            "ssh", "-i", str(self._key_file), "-p", str(self._port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "root@127.0.0.1",
        ])  # fmt: skip


def main(argv: list[str]) -> int:
    """`python -m harness.guest.vm [PROFILE]`: boot, print timings, open a shell."""
    from harness.kernels import DEFAULT_PROFILE, load_profile

    profile = load_profile(argv[0] if argv else DEFAULT_PROFILE)
    with Guest(GuestConfig.for_profile(profile)) as guest:
        print(f"{profile.name}: {guest.accel}, shell {guest.shell_seconds:.1f} s, "
              f"ssh {guest.boot_seconds:.1f} s; {guest.ssh_command()}")  # fmt: skip
        guest.interactive()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
