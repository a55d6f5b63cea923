"""What every fault test needs: the harness run as a user runs it (with faults planted
by tests.faults.inject), its result lines, and the proof that it left nothing behind.

A run is `klp-harness run --fast-guest -j 1 --keep-going` (the memory checks are not
what these tests are about; one worker keeps a run to two guests: the current one
and the one being made for the next scenario).  While it runs, a watcher records
every QEMU it starts (pid, SSH port), so that afterwards no QEMU, temp dir
(/tmp/klp-guest-<pid>-*) or listening port of it may remain.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.kernel.profiles import DEFAULT_PROFILE
from tests.guest.test_vm import default_sigint, qemu_pids, wait_gone

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ROOT / "tests" / "scenarios" / "upstream"
BASIC = UPSTREAM / "19_sysfs.toml"  # three steps: load, disable, unload
PROFILE = DEFAULT_PROFILE
RESULT = re.compile(r"^(PASS|FAIL|ERROR) +(\S+) \[(\S+)\] (\d+)/(\d+) steps")
HOSTFWD = re.compile(rb"hostfwd=tcp:127\.0\.0\.1:(\d+)-")


def scenario_copies(directory: Path, names: Sequence[str], source: Path = BASIC) -> list[Path]:
    """`source` under other names: a scenario's name (its file's stem) says which fault
    it meets; the content, hence the cached build, is the same."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = directory / f"{name}.toml"
        shutil.copyfile(source, path)
        paths.append(path)
    return paths


@dataclass
class Outcome:
    """One scenario's result line and the line after it (the reason, on a failure)."""

    status: str
    steps: int
    total: int
    reason: str


@dataclass
class Run:
    """A finished harness run."""

    pid: int
    returncode: int
    stdout: str
    stderr: str
    results: Path  # the --results root
    ports: set[int] = field(default_factory=set)  # every QEMU's forwarded SSH port

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()

    def outcomes(self) -> dict[str, Outcome]:
        found = {}
        lines = self.lines
        for i, line in enumerate(lines):
            match = RESULT.match(line)
            if match:
                reason = lines[i + 1] if i + 1 < len(lines) else ""
                found[match.group(2)] = Outcome(
                    match.group(1), int(match.group(4)), int(match.group(5)), reason
                )
        return found

    def artifacts(self, scenario: str) -> Path:
        [run_dir] = [p for p in self.results.iterdir() if p.is_dir()]
        return run_dir / PROFILE / scenario

    def observed(self, scenario: str) -> list[Any]:
        data: list[Any] = json.loads((self.artifacts(scenario) / "observed.json").read_text())
        return data

    def last_line(self) -> str:
        return self.lines[-1] if self.lines else ""


class Watcher:
    """Records the QEMU processes of a harness process while it runs."""

    def __init__(self, pid: int) -> None:
        self.marker = f"klp-guest-{pid}-"
        self.ports: set[int] = set()
        self.qemus: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            for pid in qemu_pids(self.marker):
                self.qemus.add(pid)
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                self.ports.update(int(p) for p in HOSTFWD.findall(cmdline))
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Harness:
    """A running `klp-harness` child; stderr is read as it comes, so a test can act
    when a line appears."""

    def __init__(self, argv: Sequence[str], results: Path, env: dict[str, str] | None = None,
                 faults: Sequence[dict[str, Any]] = (), cwd: Path = ROOT) -> None:  # fmt: skip
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        if faults:
            full_env["KLP_FAULTS"] = json.dumps(list(faults))
        self.results = results
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.inject", *argv],
            cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint,
        )  # fmt: skip
        self.watcher = Watcher(self.proc.pid)
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._stdout: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        self._stdout.append(self.proc.stdout.read())

    def wait_for_line(self, pattern: str, timeout: float = 120.0) -> None:
        """Block until a stderr line matches `pattern` (a regex)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(regex.search(line) for line in self._lines):
                left = deadline - time.monotonic()
                assert left > 0 and self.proc.poll() is None, (
                    f"no line matching {pattern!r}:\n" + "".join(self._lines)
                )
                self._changed.wait(min(left, 0.5))

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def _await_quiet_stderr(self, limit: float) -> None:
        """Until stderr has said nothing new for half a second (at most `limit`)."""
        deadline = time.monotonic() + limit
        with self._changed:
            seen = -1
            while seen != len(self._lines) and time.monotonic() < deadline:
                seen = len(self._lines)
                self._changed.wait(0.5)

    def finish(self, timeout: float = 300.0) -> Run:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)  # its threads' stacks, for the report
            self._await_quiet_stderr(5.0)
            self.proc.kill()
            self.proc.wait()
            for reader in self._readers:
                reader.join(10)
            raise AssertionError(
                f"still running after {timeout:.0f} s; its stderr:\n" + "".join(self._lines)
            ) from None
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for reader in self._readers:
                reader.join(10)
            self.watcher.stop()
        return Run(self.proc.pid, self.proc.returncode, "".join(self._stdout),
                   "".join(self._lines), self.results, self.watcher.ports)  # fmt: skip


def run_args(results: Path, *scenarios: Path, extra: Sequence[str] = ()) -> list[str]:
    return ["run", "--fast-guest", "-j", "1", "--keep-going", "--kernel", PROFILE,
            "--results", str(results), *extra, *map(str, scenarios)]  # fmt: skip


def run_harness(results: Path, *scenarios: Path, faults: Sequence[dict[str, Any]] = (),
                env: dict[str, str] | None = None, extra: Sequence[str] = ()) -> Run:  # fmt: skip
    """`klp-harness run` of `scenarios` with `faults` planted, to its end."""
    return Harness(run_args(results, *scenarios, extra=extra), results, env, faults).finish()


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line contains `text` (make and the compilers of a
    build name its work dir, `build-<pid>-`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def listeners(port: int) -> list[str]:
    """The command lines of the processes with a TCP socket listening on `port`
    (QEMU's SSH forward is IPv4 only).  By owner, not by port alone: once a run's
    QEMU is gone its port is free, and another guest on the machine may take it."""
    inodes = {
        fields[9]
        for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port
    }
    owners = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
            if any(f"socket:[{inode}]" in links for inode in inodes):
                owners.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return owners


def assert_nothing_left(run: Run, killed: bool = False) -> None:
    """No QEMU, temp dir or listening port of the run remains.  A SIGKILLed harness
    cannot clean up: its QEMU dies with it (parent-death signal) and its temp dirs
    are swept by the next guest, which is what this then checks."""
    from harness.host import reaper

    marker = f"klp-guest-{run.pid}-"
    assert wait_gone(marker) == [], f"QEMU left running by {run.pid}"
    if killed:
        reaper.sweep_stale_dirs()
    assert list(Path("/tmp").glob(f"{marker}*")) == []
    assert [c for p in run.ports for c in listeners(p) if marker in c] == []


def assert_one_line_reason(run: Run, text: str) -> None:
    """The run ended with exactly one `klp-harness: ...` line naming `text`, and no
    traceback anywhere."""
    assert "Traceback" not in run.stderr, run.stderr
    assert run.last_line().startswith("klp-harness: "), run.stderr
    assert text in run.last_line(), run.stderr
    assert sum(line.startswith("klp-harness: ") for line in run.lines) == 1


def interrupt_names(signum: int) -> tuple[int, str]:
    """The exit code and last line of a harness stopped by `signum`."""
    if signum == signal.SIGINT:
        return 130, "klp-harness: interrupted"
    return 128 + signum, f"klp-harness: terminated by {signal.Signals(signum).name}"
