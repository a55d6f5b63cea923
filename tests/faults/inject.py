"""`python -m tests.faults.inject ARGS...`: `klp-harness ARGS...` with faults planted.

The fault tests run the real command line in a child process, as a user would, so
that exit codes, stderr and leftovers are the real ones.  Some faults must strike at
an exact moment (a panic during step 2, QEMU killed while the next guest is being
made), which no outside observer can time; this wrapper plants them, from the
environment, before calling `harness.cli.main`:

    KLP_FAULTS='[{"scenario": "panic", "step": 1, "action": "guest",
                  "arg": "echo c > /proc/sysrq-trigger"}]'

Each fault fires once, just before step `step` (0-based) of the scenario named
`scenario` (the file's stem) is performed.  Actions:

    guest      run `arg` in the guest on the command channel, as a step would
    crashmod   load tests/data/crashmod with what=`arg` (oops, WARN, ...)
    kill-qemu  SIGKILL this scenario's QEMU
    stop-qemu  SIGSTOP this scenario's QEMU (a frozen guest)
    starve     keep the guest busy, and QEMU off every CPU for `arg` seconds (SIGSTOP,
               then SIGCONT), while the harness does not wait on the guest: a host
               that did not schedule it
    kill-next  SIGKILL the QEMU of the guest being made for the next scenario, as
               soon as it exists
    skip       do not perform the step
    fill       fill the file system holding the directory `arg` (ENOSPC from then on)
    read-only  mount the directory `arg` over itself, read-only

On SIGUSR1 the child writes every thread's stack to stderr (a test that gave up
waiting for it asks, before it kills it).

Other settings:

    KLP_FAULT_BOOT=<seconds>       SIGKILL the first QEMU started, that long after
    KLP_FAULT_SETTLE=<seconds>     the runner's settle timeout (upstream's 60 s)
    KLP_FAULT_SNAPSHOTS=<dir>      where snapshots are kept (a private, damaged one)

The child prints `klp-fault: <action>` on stderr when a fault fires, so a test can
tell a fault that never fired from one that was survived.
"""

from __future__ import annotations

import faulthandler
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness.guest.console import Console
from harness.outcome.record import StepRecord
from harness.runner import guests, session, waits
from harness.scenario.step_types import Step

CRASHMOD = Path(__file__).resolve().parents[1] / "data" / "crashmod" / "crashmod.c"


def announce(action: str) -> None:
    print(f"klp-fault: {action}", file=sys.stderr, flush=True)


def child_qemus(exclude: int) -> list[int]:
    """QEMU processes this process started, except `exclude`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        try:
            stat = (entry / "stat").read_text()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and argv0.endswith(b"qemu-system-x86_64"):
            found.append(int(entry.name))
    return found


def kill_next(current: int, timeout: float = 30.0) -> None:
    """Kill the next guest's QEMU the moment it exists: while it is being resumed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in child_qemus(current):
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.005)
    raise AssertionError("no guest was being made for the next scenario")


def fill(directory: str) -> None:
    """Write a file until the file system is full; it stays, so the file system does."""
    with open(os.path.join(directory, ".klp-fault-filler"), "wb") as out:
        chunk = b"\0" * (1 << 16)
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError:
            pass


def load_crashmod(guest: Any, what: str) -> None:
    from harness.kernel.profiles import load_profile
    from harness.modules.build import build_sources

    profile = load_profile(guest.config.name)
    ko = build_sources({"crashmod": CRASHMOD.read_text()}, profile).modules["crashmod"]
    guest.put_file(ko, "/tmp/crashmod.ko")
    guest.run(f"insmod /tmp/crashmod.ko what={what}", timeout=60)


def fire(fault: dict[str, Any], guest: Any) -> bool:
    """Carry out one fault; True if the step is still to be performed."""
    action, arg = fault["action"], fault.get("arg", "")
    announce(action)
    if action == "guest":
        guest.run(arg, timeout=60)
    elif action == "crashmod":
        load_crashmod(guest, arg)
    elif action == "kill-qemu":
        os.kill(guest.qemu_pid, signal.SIGKILL)
    elif action == "stop-qemu":
        os.kill(guest.qemu_pid, signal.SIGSTOP)
    elif action == "starve":
        guest.run("(timeout 120 dd if=/dev/zero of=/dev/null bs=64k >/dev/null 2>&1 &); true")
        time.sleep(2)  # dd runs
        os.kill(guest.qemu_pid, signal.SIGSTOP)
        time.sleep(float(arg))
        os.kill(guest.qemu_pid, signal.SIGCONT)
        time.sleep(12)  # the watchdogs look every 4 s
    elif action == "kill-next":
        kill_next(guest.qemu_pid)
    elif action == "skip":
        return False
    elif action == "fill":
        fill(arg)
    elif action == "read-only":  # a read-only mount over it; open files stay writable
        subprocess.run(["mount", "--bind", arg, arg], check=True)
        subprocess.run(["mount", "-o", "remount,ro,bind", arg], check=True)
    else:
        raise AssertionError(f"unknown fault action {action!r}")
    return True


def plant_step_faults(faults: list[dict[str, Any]]) -> None:
    original = session.ScenarioSession.run_step
    pending = list(faults)

    def run_step(self: Any, index: int, step: Step, want: StepRecord) -> StepRecord:
        for fault in list(pending):
            if fault["scenario"] == self.scenario.name and fault["step"] == index:
                pending.remove(fault)
                if not fire(fault, self.guest):
                    observed: StepRecord = self.observe(index, step, 0, want)
                    return observed
        return original(self, index, step, want)

    session.ScenarioSession.run_step = run_step  # type: ignore[method-assign]


def plant_boot_kill(delay: float) -> None:
    """SIGKILL the first QEMU `delay` seconds after it starts."""
    original = Console.__init__
    fired = threading.Event()

    def init(self: Console, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if not fired.is_set():
            fired.set()
            pid = self.pid
            threading.Timer(delay, lambda: (announce("kill-boot"), os.kill(pid, 9))).start()

    Console.__init__ = init  # type: ignore[method-assign]


def plant_snapshot_root(root: Path) -> None:
    original = guests.GuestSource.__init__

    def init(self: guests.GuestSource, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("snapshot_root", root)
        original(self, *args, **kwargs)

    guests.GuestSource.__init__ = init  # type: ignore[method-assign]


def main() -> int:
    from harness.cli import main as cli_main

    # a child that outlives its test's patience is asked for its threads' stacks
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    plant_step_faults(json.loads(os.environ.get("KLP_FAULTS", "[]")))
    if "KLP_FAULT_BOOT" in os.environ:
        plant_boot_kill(float(os.environ["KLP_FAULT_BOOT"]))
    if "KLP_FAULT_SETTLE" in os.environ:
        seconds = float(os.environ["KLP_FAULT_SETTLE"])
        waits.SETTLE_TIMEOUT = seconds
        waits.settle_script = functools.partial(waits.settle_script, timeout=seconds)  # type: ignore[assignment]
    if "KLP_FAULT_SNAPSHOTS" in os.environ:
        plant_snapshot_root(Path(os.environ["KLP_FAULT_SNAPSHOTS"]))
    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
