"""vmlinux's symbol data, recorded once per profile from a guest and cached.

One guest boot per profile (about 15 s under TCG): the text symbols of vmlinux from
`/proc/kallsyms` (filtered in the guest by static busybox awk: only `t`/`T` lines
without a module), `available_filter_functions`, and the modules the guest has loaded
when a scenario starts; and vmlinux's BTF (`/sys/kernel/btf/vmlinux`, a few MB, for
the prototypes a replacement body must match: harness.modules.signatures), recorded
on demand into an older record that lacks it.  Kept gzipped under
`<cache>/symbols/<profile>-<release>/`,
written atomically, so a damaged or half-written record is never read.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.errors import HarnessError
from harness.files import atomic_write, exclusive
from harness.guest.config import GuestConfig
from harness.guest.shell import CommandResult
from harness.guest.vm import Guest
from harness.kernel.profiles import KernelProfile, cache_root
from harness.symbols.data import ObjectSymbols, parse_filter_functions, parse_kallsyms_text

KALLSYMS = "kallsyms.txt.gz"
FTRACE = "available_filter_functions.txt.gz"
LOADED = "loaded_modules.txt"
TRACEFS = "/sys/kernel/tracing"
BTF = "vmlinux.btf.gz"
# gzip in the guest, base64 so the bytes cross the text channel intact; a kernel
# built without CONFIG_DEBUG_INFO_BTF (a tree of the user's) has none: recorded empty
NO_BTF = "no-btf"
BTF_COMMAND = (
    "if [ -e /sys/kernel/btf/vmlinux ]; then gzip -c /sys/kernel/btf/vmlinux | base64 -w0; "
    f"else echo {NO_BTF}; fi"
)

COMMANDS = {
    KALLSYMS: "busybox awk '$2 ~ /^[tT]$/ && NF == 3 {print $3}' /proc/kallsyms",
    FTRACE: f"cat {TRACEFS}/available_filter_functions",
    LOADED: "busybox awk '{print $1}' /proc/modules",
}


class Runs(Protocol):
    def run(self, cmd: str, timeout: float = 30.0, check: bool = False) -> CommandResult: ...


@dataclass(frozen=True)
class VmlinuxRecord:
    symbols: ObjectSymbols
    loaded_modules: frozenset[str]  # modules loaded in the guest before any step


def record_dir(profile: KernelProfile) -> Path:
    return cache_root() / "symbols" / f"{profile.name}-{profile.release}".replace("/", "_")


def is_recorded(directory: Path) -> bool:
    return all((directory / name).is_file() for name in COMMANDS)


def record_from(guest: Runs, directory: Path) -> None:
    """Read the three lists from a running guest into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, command in COMMANDS.items():
        out = guest.run(command, timeout=600)
        if out.exit_code != 0 or not out.stdout.strip():
            raise HarnessError(f"recording symbols: `{command}` failed in the guest")
        data = out.stdout.encode()
        atomic_write(directory / name, gzip.compress(data) if name.endswith(".gz") else data)


def record_profile(profile: KernelProfile) -> Path:
    """Boot a guest of `profile` once and record its vmlinux symbol data."""
    directory = record_dir(profile)

    def record(guest: Runs) -> None:
        record_from(guest, directory)
        record_btf(guest, directory)

    _record_once(profile, directory, lambda: is_recorded(directory), record)
    return directory


def _record_once(
    profile: KernelProfile,
    directory: Path,
    done: Callable[[], bool],
    record: Callable[[Runs], None],
) -> None:
    """Boot a guest of `profile` and `record` from it, unless `done`: one process at a
    time (one boot, not one per test worker), the others then find it done."""
    if done():
        return
    with exclusive(directory.parent / f".{directory.name}.lock"):
        if done():
            return
        config = GuestConfig.for_profile(profile, log_dir=cache_root() / "logs")
        with Guest(config) as guest:
            record(guest)


def record_btf(guest: Runs, directory: Path) -> None:
    """Read vmlinux's BTF from a running guest into `directory` (gzipped)."""
    out = guest.run(BTF_COMMAND, timeout=600)
    if out.exit_code == 0 and out.stdout.strip() == NO_BTF:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / BTF, gzip.compress(b""))
        return
    try:
        data = gzip.decompress(base64.b64decode(out.stdout.strip(), validate=True))
    except (ValueError, OSError, EOFError):
        data = b""
    if out.exit_code != 0 or not data:
        raise HarnessError(f"recording symbols: `{BTF_COMMAND}` failed in the guest")
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / BTF, gzip.compress(data))


def vmlinux_btf(profile: KernelProfile) -> bytes:
    """The profile's vmlinux BTF, recorded first (one guest boot) if the cache lacks
    it; empty if the kernel has none."""
    directory = record_dir(profile)
    _record_once(
        profile,
        directory,
        (directory / BTF).is_file,
        lambda guest: record_btf(guest, directory),
    )
    return gzip.decompress((directory / BTF).read_bytes())


def read_record(directory: Path) -> VmlinuxRecord:
    def text(name: str) -> str:
        raw = (directory / name).read_bytes()
        return (gzip.decompress(raw) if name.endswith(".gz") else raw).decode()

    functions = parse_kallsyms_text(text(KALLSYMS))
    symbols = ObjectSymbols("vmlinux", functions, parse_filter_functions(text(FTRACE)))
    loaded = frozenset(line.strip() for line in text(LOADED).splitlines() if line.strip())
    return VmlinuxRecord(symbols, loaded)


def vmlinux_record(profile: KernelProfile) -> VmlinuxRecord:
    """The profile's recorded vmlinux data, recording it first if needed."""
    return read_record(record_profile(profile))
