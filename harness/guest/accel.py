"""Choose the accelerator: KVM when it really works, TCG otherwise.

`/dev/kvm` existing is not enough: on the nested-virtualisation machines this
harness runs on, a KVM guest hangs right after the kernel's decompressor, whatever
the CPU model.  So KVM is probed by booting the kernel without an initramfs and
waiting a few seconds for it to get through to mounting a root (it then panics,
which ends QEMU).  The answer is cached per machine, so only the first boot on a
machine pays for the probe; `KLP_HARNESS_ACCEL=kvm|tcg` skips it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from shutil import which

from harness.errors import UsageError
from harness.guest.errors import HostFailure
from harness.guest.qemu import QEMU
from harness.host.reaper import pdeathsig_preexec
from harness.kernel.profiles import cache_root

KVM_ARGS = ("-accel", "kvm", "-cpu", "host")
TCG_ARGS = ("-accel", "tcg", "-cpu", "max")
ENV_OVERRIDE = "KLP_HARNESS_ACCEL"
PROBE_TIMEOUT = 10.0
# Any of these on the console means the kernel ran its init code under KVM.
PROBE_SUCCESS = re.compile(r"Kernel panic - not syncing|VFS: |Run /init|Freeing unused kernel")

# (argv, timeout) -> the probe kernel reached PROBE_SUCCESS in time
ProbeRunner = Callable[[Sequence[str], float], bool]


@dataclass(frozen=True)
class Accel:
    name: str  # "kvm" or "tcg"
    args: tuple[str, ...]  # QEMU arguments selecting it
    reason: str  # why, for `klp-harness boot` and bug reports


def probe_argv(kernel: Path) -> list[str]:
    """Boot `kernel` under KVM without an initramfs; it panics once init runs."""
    return [
        QEMU, *KVM_ARGS, "-m", "256", "-nodefaults", "-no-user-config",
        "-display", "none", "-no-reboot", "-serial", "stdio",
        "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1",
    ]  # fmt: skip


def run_probe(argv: Sequence[str], timeout: float) -> bool:
    """Run QEMU until its console matches PROBE_SUCCESS, it exits, or `timeout`."""
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=pdeathsig_preexec(),
        )
    except OSError as exc:  # QEMU missing, no descriptor or process left
        raise HostFailure(
            f"cannot start {argv[0]}: {exc.strerror or exc} (run `make setup`)"
        ) from None
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([proc.stdout], [], [], left)
            chunk = os.read(proc.stdout.fileno(), 65536) if ready else b""
            if not chunk:
                break
            seen = (seen + chunk)[-8192:]
            if PROBE_SUCCESS.search(seen.decode(errors="replace")):
                return True
        return False
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def machine_key(qemu: str = QEMU) -> str:
    """Identifies this machine's KVM situation: host, host kernel and QEMU build."""
    uname = os.uname()
    try:
        path = which(qemu) or qemu
        stat = os.stat(path)
        qemu_id = f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        qemu_id = qemu
    return f"{uname.nodename} {uname.release} {qemu_id}"


def _by_name(name: str, reason: str) -> Accel:
    if name == "kvm":
        return Accel("kvm", KVM_ARGS, reason)
    if name == "tcg":
        return Accel("tcg", TCG_ARGS, reason)
    raise UsageError(f"unknown accelerator {name!r} (kvm or tcg)")


def _read_cache(cache: Path, key: str) -> Accel | None:
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    try:
        return _by_name(str(data["accel"]), f"{data['reason']} (cached)")
    except (KeyError, UsageError):
        return None


def _write_cache(cache: Path, key: str, accel: Accel) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "accel": accel.name, "reason": accel.reason}) + "\n")
    tmp.replace(cache)


def choose_accel(
    kernel: Path,
    cache: Path,
    *,
    runner: ProbeRunner = run_probe,
    requested: str | None = None,
    env: Mapping[str, str] = os.environ,
    kvm_device: Path = Path("/dev/kvm"),
    key: str | None = None,
) -> Accel:
    """The accelerator to boot with: asked for, cached, or probed (and cached)."""
    forced = requested or env.get(ENV_OVERRIDE)
    if forced and forced != "auto":
        return _by_name(forced, "requested")
    if not os.access(kvm_device, os.R_OK | os.W_OK):
        return _by_name("tcg", f"{kvm_device} is not usable")
    key = key if key is not None else machine_key()
    cached = _read_cache(cache, key)
    if cached is not None:
        return cached
    if runner(probe_argv(kernel), PROBE_TIMEOUT):
        accel = _by_name("kvm", "KVM probe booted")
    else:
        accel = _by_name("tcg", f"KVM probe did not boot within {PROBE_TIMEOUT:.0f} s")
    with contextlib.suppress(OSError):  # a full or read-only cache: probed again next time
        _write_cache(cache, key, accel)
    return accel


def default_cache() -> Path:

    return cache_root() / "accel.json"
