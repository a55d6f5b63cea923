"""Livepatch relocations in a built module: the compiler's output turned into the
`.klp.rela.<obj>.<section>` sections and `.klp.sym.<obj>.<name>,<sympos>` symbols of
Documentation/livepatch/module-elf-format.rst, then checked against that document.

Why: kpatch-build and klp-build reach a patched object's non-exported symbols through
livepatch relocations, which the livepatch core writes when the object is loaded
(6.1 kernel/livepatch/core.c:klp_init_object_loaded -> klp_apply_object_relocs) and,
from v6.3, clears when it goes (klp_clear_object_relocs).  A compiler cannot emit
them: kmod_templates/livepatch.c.j2 emits a weak undefined symbol with the `.klp.sym`
name, a pointer to it alone in a data section `S` (`.klp_harness_refs.<obj>`), so
that `.rela<S>` holds exactly that one R_X86_64_64, and an empty section that is never
loaded (not SHF_ALLOC) named `.klp.rela.<obj>.<S>`: the name the relocation section
takes.  This module then patches bytes in place (offsets read with pyelftools;
nothing moves, so no string table has to grow): `.rela<S>` takes that name (the
kernel parses it with `.klp.rela.%55[^.]`) and SHF_ALLOC | SHF_RELA_LIVEPATCH (the
module loader then keeps it and leaves it to livepatch, 6.1 kernel/module/main.c:1383);
each symbol its relocations name takes st_shndx SHN_LIVEPATCH (skipped by
simplify_symbols, :1322, and required by klp_resolve_symbols, core.c:228).  The name
is not the data section's own: every SHF_ALLOC section gets a file under
/sys/module/<patch>/sections/, and a second one of the same name is refused with a
"cannot create duplicate filename" warning.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from harness.host.inputs import KO_LIMIT, foreign, read_input
from harness.modules.ko import BadModule
from harness.symbols.data import ELF_ERRORS

SHF_ALLOC = 0x2
SHF_RELA_LIVEPATCH = 0x00100000  # include/uapi/linux/elf.h
SHN_UNDEF = 0
SHN_LIVEPATCH = 0xFF20
SECTION_PREFIX = ".klp.rela."
SYMBOL_PREFIX = ".klp.sym."
# Part of the build cache key of a module that has klp relocations: bump it when the
# conversion changes what a build makes.
FORMAT = 1
# Elf64_Shdr: sh_name at 0 (u32), sh_flags at 8 (u64); Elf64_Sym: st_shndx at 6 (u16)
_SH_NAME, _SH_FLAGS, _ST_SHNDX = 0, 8, 6
# The formats the kernel reads (core.c:klp_write_section_relocs, klp_resolve_symbols)
_SECTION_RE = re.compile(r"^\.klp\.rela\.([^.]{1,55})\.(.+)$")
_SYMBOL_RE = re.compile(r"^\.klp\.sym\.([^.]{1,55})\.([^,]{1,511}),(\d+)$")


def in_source(source: str) -> bool:
    """Whether a rendered module asks for klp relocations (its build is converted)."""
    return f'.pushsection \\"{SECTION_PREFIX}' in source


@dataclass(frozen=True)
class KlpRelaSection:
    """One livepatch relocation section as the kernel will read it."""

    name: str
    objname: str
    target: str  # the section its relocations write (sh_info)
    flags: int
    symbols: tuple[tuple[str, int], ...]  # (name, st_shndx) of each relocation's symbol


def _open(data: bytes, path: Path) -> ELFFile:
    with foreign(path, "ELF file", ELF_ERRORS):
        return ELFFile(io.BytesIO(data))


def _patches(elf: ELFFile, path: Path) -> list[tuple[int, bytes]]:
    """(file offset, new bytes) turning each `.rela.klp.rela.*` section into a klp
    relocation section; none when there is nothing (left) to convert."""
    symtab = elf.get_section_by_name(".symtab")
    if not isinstance(symtab, SymbolTableSection):
        raise BadModule(f"{path}: no symbol table")
    shoff, shentsize = elf["e_shoff"], elf["e_shentsize"]
    holders = {
        s.name: s["sh_name"]
        for s in elf.iter_sections()
        if s.name.startswith(SECTION_PREFIX) and not s["sh_flags"] & SHF_ALLOC
    }
    out: list[tuple[int, bytes]] = []
    for index, section in enumerate(elf.iter_sections()):
        if not isinstance(section, RelocationSection) or section["sh_flags"] & SHF_RELA_LIVEPATCH:
            continue
        data = elf.get_section(section["sh_info"])
        name = next((n for n in holders if n.endswith("." + data.name)), None)
        if name is None or _SECTION_RE.match(name) is None or section.name != ".rela" + data.name:
            continue
        header = shoff + index * shentsize
        flags = section["sh_flags"] | SHF_ALLOC | SHF_RELA_LIVEPATCH
        out.append((header + _SH_NAME, struct.pack("<I", holders[name])))
        out.append((header + _SH_FLAGS, struct.pack("<Q", flags)))
        for reloc in section.iter_relocations():
            symbol = symtab.get_symbol(reloc["r_info_sym"])
            if not symbol.name.startswith(SYMBOL_PREFIX) or symbol["st_shndx"] != "SHN_UNDEF":
                raise BadModule(
                    f"{path}: {section.name} relocates against {symbol.name!r}, "
                    f"not an undefined {SYMBOL_PREFIX}* symbol"
                )
            entry = symtab["sh_offset"] + reloc["r_info_sym"] * symtab["sh_entsize"]
            out.append((entry + _ST_SHNDX, struct.pack("<H", SHN_LIVEPATCH)))
    return out


def convert(path: Path) -> int:
    """Convert a built module's klp relocation sections in place; the number of
    sections converted (0: none, or already converted)."""
    data = bytearray(read_input(path, KO_LIMIT, "module"))
    with foreign(path, "ELF file", ELF_ERRORS):
        patches = _patches(_open(bytes(data), path), path)
    for offset, value in patches:
        data[offset : offset + len(value)] = value
    if patches:
        path.write_bytes(bytes(data))
    return sum(1 for offset, value in patches if len(value) == 8)  # one sh_flags each


def read(path: Path) -> list[KlpRelaSection]:
    """Every section flagged SHF_RELA_LIVEPATCH, with its relocations' symbols; a
    damaged file is one UsageError."""
    elf = _open(read_input(path, KO_LIMIT, "module"), path)
    with foreign(path, "ELF file", ELF_ERRORS):
        return _read(elf)


def _read(elf: ELFFile) -> list[KlpRelaSection]:
    symtab = elf.get_section_by_name(".symtab")
    found = []
    for section in elf.iter_sections():
        if not section["sh_flags"] & SHF_RELA_LIVEPATCH:
            continue
        match = _SECTION_RE.match(section.name)
        symbols: tuple[tuple[str, int], ...] = ()
        if isinstance(section, RelocationSection) and isinstance(symtab, SymbolTableSection):
            symbols = tuple(
                _symbol(symtab, reloc["r_info_sym"]) for reloc in section.iter_relocations()
            )
        found.append(
            KlpRelaSection(
                name=section.name,
                objname=match.group(1) if match else "",
                target=elf.get_section(section["sh_info"]).name,
                flags=section["sh_flags"],
                symbols=symbols,
            )
        )
    return found


def _symbol(symtab: SymbolTableSection, index: int) -> tuple[str, int]:
    symbol = symtab.get_symbol(index)
    shndx = symbol["st_shndx"]
    return symbol.name, shndx if isinstance(shndx, int) else SHN_UNDEF


def problems(sections: list[KlpRelaSection]) -> list[str]:
    """What the kernel would refuse in them (module-elf-format.rst, 6.1 core.c
    klp_resolve_symbols :225-265, klp_apply_section_relocs :303-313); empty if none."""
    found = []
    for sec in sections:
        if not sec.objname:
            found.append(f"{sec.name}: not named .klp.rela.<objname>.<section>")
        if not sec.flags & SHF_ALLOC:
            found.append(f"{sec.name}: not SHF_ALLOC")
        for name, shndx in sec.symbols:
            match = _SYMBOL_RE.match(name)
            if shndx != SHN_LIVEPATCH:
                found.append(f"{sec.name}: symbol {name} is not SHN_LIVEPATCH")
            if match is None:
                found.append(f"{sec.name}: symbol {name} is not .klp.sym.<obj>.<name>,<pos>")
            elif match.group(1) == "vmlinux" and sec.objname != "vmlinux":
                found.append(f"{sec.name}: vmlinux symbol {name} in a module's section")
    return found


def finish(path: Path) -> list[KlpRelaSection]:
    """Convert a built module that asked for klp relocations and check the result;
    BadModule when it has none afterwards or the kernel would refuse one."""
    convert(path)
    sections = read(path)
    if not sections:
        raise BadModule(f"{path}: no {SECTION_PREFIX}* relocation section to convert")
    found = problems(sections)
    if found:
        raise BadModule(f"{path}: {found[0]}")
    return sections
