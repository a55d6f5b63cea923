"""Symbol tables of a profile: vmlinux's recorded once from a guest, modules' read from
their ELF files.

vmlinux: Debian ships no real System.map (the packaged one is a placeholder that points
to the -dbg package), so the guest's own `/proc/kallsyms` (text symbols of vmlinux, in
kallsyms order) and `available_filter_functions` (what ftrace can patch) are recorded
once per profile and kept in the cache (`harness.symbols.record`).

Modules: a module's `.symtab` lists its functions in the order its kallsyms does (the
kernel keeps the symtab's order, kernel/module/kallsyms.c), and its `__mcount_loc`
section holds one relocation per ftrace call site: a function is ftrace-able exactly
when one of those sites lies inside it.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from elftools.common.exceptions import DWARFError, ELFError
from elftools.construct.core import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from harness.errors import HarnessError, UsageError
from harness.files import atomic_write
from harness.host.inputs import KO_LIMIT, foreign, read_input

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz", ".ko.bz2")


@dataclass(frozen=True)
class ObjectSymbols:
    """The functions of one object (vmlinux or a module)."""

    name: str
    functions: tuple[str, ...]  # every function symbol, in kallsyms order
    ftraceable: frozenset[str]
    counts: Counter[str] = field(default_factory=Counter, compare=False)

    def __post_init__(self) -> None:
        self.counts.update(self.functions)

    def count(self, func: str) -> int:
        return self.counts[func]


def module_key(name: str) -> str:
    """Module names treat '-' and '_' alike (kmod does)."""
    return name.replace("-", "_")


def find_module_file(modules_dir: Path, name: str) -> Path | None:
    """The .ko file of module `name` under `modules_dir/kernel`, or None."""
    return _module_files(modules_dir).get(module_key(name))


@cache
def _module_files(modules_dir: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted((modules_dir / "kernel").rglob("*.ko*")):
        for suffix in MODULE_SUFFIXES:
            if path.name.endswith(suffix):
                files.setdefault(module_key(path.name[: -len(suffix)]), path)
    return files


# pyelftools' own exceptions on malformed input (construct's, where it does not wrap them)
ELF_ERRORS = (ELFError, DWARFError, ConstructError)


def _decompress(path: Path) -> bytes:
    data = read_input(path, KO_LIMIT, "module")
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".bz2"):
        return bz2.decompress(data)
    if path.name.endswith(".zst"):
        try:
            # optional: only a tree whose modules are zstd-compressed needs it
            import zstandard  # type: ignore[import-not-found]  # noqa: PLC0415
        except ImportError:
            raise HarnessError(f"{path}: reading .zst modules needs python3-zstandard") from None
        return bytes(zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 30))
    return data


@cache
def module_symbols(path: Path) -> ObjectSymbols:
    """Functions of a module file and those with an ftrace call site (__mcount_loc);
    a damaged file is one UsageError."""
    with foreign(path, "module", ELF_ERRORS):
        return _module_symbols(path, _decompress(path))


def _module_symbols(path: Path, data: bytes) -> ObjectSymbols:
    elf = ELFFile(io.BytesIO(data))
    symtab = elf.get_section_by_name(".symtab")
    if not isinstance(symtab, SymbolTableSection):
        raise UsageError(f"{path}: no symbol table (stripped?): a module needs one")
    functions: list[str] = []
    by_section: dict[int, list[tuple[int, int, str]]] = {}
    for sym in symtab.iter_symbols():
        if sym["st_info"]["type"] != "STT_FUNC" or not sym.name:
            continue
        functions.append(sym.name)
        shndx = sym["st_shndx"]
        if isinstance(shndx, int):
            by_section.setdefault(shndx, []).append((sym["st_value"], sym["st_size"], sym.name))
    ftraceable: set[str] = set()
    rela = elf.get_section_by_name(".rela__mcount_loc")
    if isinstance(rela, RelocationSection):
        for reloc in rela.iter_relocations():
            target = symtab.get_symbol(reloc["r_info_sym"])
            site = target["st_value"] + reloc["r_addend"]
            for start, size, name in by_section.get(target["st_shndx"], ()):
                if start <= site < start + max(size, 1):
                    ftraceable.add(name)
    name = path.name.split(".ko")[0]
    return ObjectSymbols(module_key(name), tuple(functions), frozenset(ftraceable))


def plain_module_file(modules_dir: Path, name: str, cache: Path) -> Path:
    """An uncompressed copy of module `name`'s file under `cache` (the guest loads it
    with one finit_module, without the kernel's decompression)."""
    source = find_module_file(modules_dir, name)
    if source is None:
        raise HarnessError(f"no module {name!r} under {modules_dir}")
    dest = cache / f"{module_key(name)}.ko"
    stat = source.stat()
    stamp = cache / f"{module_key(name)}.source"
    mark = f"{source} {stat.st_size} {stat.st_mtime_ns}"
    if dest.is_file() and stamp.is_file() and stamp.read_text() == mark:
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, _decompress(source))
    atomic_write(stamp, mark)
    return dest


def parse_kallsyms_text(text: str) -> tuple[str, ...]:
    """vmlinux's function names from recorded `/proc/kallsyms` text lines (one name
    per line, already filtered to t/T symbols without a module)."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def parse_filter_functions(text: str) -> frozenset[str]:
    """vmlinux's names in `available_filter_functions` (lines `name` or `name [mod]`)."""
    names = set()
    for line in text.splitlines():
        words = line.split()
        if len(words) == 1:
            names.add(words[0])
    return frozenset(names)
