"""Checks on a built `.ko` before it is handed out or taken from the cache.

A module the guest's kernel would refuse (wrong vermagic) or would not treat as a
livepatch (no `livepatch=Y` in its modinfo) fails here, on the host, with its name;
so does a file that is not a whole ELF module (a truncated or damaged cache entry),
which the build cache then rebuilds instead of letting the kernel answer -ENOEXEC.
"""

from __future__ import annotations

import struct
from pathlib import Path

from harness.errors import HarnessError
from harness.host.inputs import KO_LIMIT, MALFORMED, one_line, read_input
from harness.kernel.profiles import KernelProfile


class BadModule(HarnessError):
    """The file is not a usable kernel module (not ELF, truncated, damaged)."""


def read_modinfo(path: Path) -> dict[str, list[str]]:
    """The `.modinfo` section of a 64-bit little-endian ELF module, as modinfo(8) shows
    it (a key may repeat, e.g. `parm`).  Parsed here so checking a .ko costs no process."""
    data = read_input(path, KO_LIMIT, "module")
    if data[:4] != b"\x7fELF" or len(data) < 6 or data[4] != 2 or data[5] != 1:
        raise BadModule(f"{path}: not a 64-bit little-endian ELF file")
    try:
        return _modinfo(data)
    except MALFORMED as exc:
        raise BadModule(f"{path}: damaged ELF file ({one_line(exc)})") from None


def _modinfo(data: bytes) -> dict[str, list[str]]:
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shoff + shnum * shentsize > len(data):
        raise ValueError("section headers past the end of the file: truncated")

    def section(index: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", data, shoff + index * shentsize
        )
        if offset + size > len(data) and _type != 8:  # SHT_NOBITS (.bss) has no bytes
            raise ValueError(f"section {index} past the end of the file: truncated")
        return name, offset, size

    _, str_off, str_size = section(shstrndx)
    names = data[str_off : str_off + str_size]
    info: dict[str, list[str]] = {}
    found = False
    for index in range(shnum):
        name_off, offset, size = section(index)
        if names[name_off : names.index(b"\0", name_off)] != b".modinfo":
            continue
        found = True
        for entry in data[offset : offset + size].split(b"\0"):
            key, sep, value = entry.decode(errors="replace").partition("=")
            if sep:
                info.setdefault(key, []).append(value)
    if not found:
        raise ValueError("no .modinfo section")
    return info


def check_ko(path: Path, name: str, profile: KernelProfile, livepatch: bool) -> None:
    """Refuse a .ko the profile's kernel would reject or not treat as intended."""
    info = read_modinfo(path)
    vermagic = " ".join(info.get("vermagic", [""])[0].split())
    if vermagic != profile.vermagic:
        raise HarnessError(
            f"{name}: vermagic {vermagic!r} is not {profile.name}'s {profile.vermagic!r} ({path})"
        )
    if livepatch and info.get("livepatch") != ["Y"]:
        raise HarnessError(f"{name}: livepatch module without `livepatch: Y` in modinfo ({path})")


def declares_livepatch(source: str) -> bool:
    """What modpost turns into `livepatch=Y`: `MODULE_INFO(livepatch, "Y")`."""
    return 'MODULE_INFO(livepatch, "Y")' in source
