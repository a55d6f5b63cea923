"""The structure of a livepatch module read from its file: objects, funcs (name,
sympos, replacement), callbacks, states and `replace`.

How: a hand-written livepatch (the kernel's samples, its selftests' modules,
kpatch-style hand edits) declares static `klp_patch` / `klp_object` / `klp_func` /
`klp_state` initialisers.  In the relocatable .ko every pointer in them is a RELA
relocation (the bytes are zero), every integer is in the section's bytes.  So, with
pyelftools: find the `klp_patch` (the initialiser whose `mod` field is relocated
against `__this_module`, i.e. `.mod = THIS_MODULE`, and whose `objs` is relocated),
walk its arrays by the struct sizes of the profile's kernel (`harness.modules.layout`),
and follow each pointer's relocation to a string (a name), a function symbol (the
replacement, a callback) or another array.  A NULL pointer is an absent relocation.

Why not a discovery load: loading the module in a throwaway guest and reading
`/sys/kernel/livepatch/<patch>/` shows objects and funcs (with sympos) but not which
callbacks exist nor the states, and `replace` only since 6.11; it also costs a guest
(resume + load + reads, ~1-2 s under TCG) where reading the file costs ~20-60 ms on
the samples (measured in `tests/modules/test_elf.py`'s fixtures) and runs before any guest,
so a bad module is refused with exit 2.

What the file cannot tell: what callbacks print, what a replacement does, anything
decided at run time (a patch assembled in init, as klp-build's and kpatch-build's
generated modules do: this reader then finds no static klp_patch and says so).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import Section, SymbolTableSection

from harness.errors import UsageError
from harness.host.inputs import KO_LIMIT, foreign, read_input
from harness.modules.layout import KlpLayout
from harness.scenario.types import Callback
from harness.symbols.data import ELF_ERRORS

EM_X86_64 = "EM_X86_64"
CALLBACK_ORDER = (
    Callback.PRE_PATCH,
    Callback.POST_PATCH,
    Callback.PRE_UNPATCH,
    Callback.POST_UNPATCH,
)  # struct klp_callbacks field order
MAX_ENTRIES = 4096  # an array longer than this is not a livepatch's: damaged input


class BadKo(UsageError):
    """The file is not a module this reader can use (one line, exit 2)."""


@dataclass(frozen=True)
class KoFunc:
    name: str
    sympos: int
    new_func: str  # the replacement's symbol ("" if it has none: a stripped file)


@dataclass(frozen=True)
class KoObject:
    name: str | None  # None: vmlinux
    funcs: tuple[KoFunc, ...]
    callbacks: frozenset[Callback]


@dataclass(frozen=True)
class KoPatch:
    objects: tuple[KoObject, ...]
    states: tuple[tuple[int, int], ...]  # (id, version)
    replace: bool


@dataclass(frozen=True)
class Target:
    """Where a relocated pointer points: a section and an offset in it."""

    section: int
    offset: int


class KoFile:
    """One relocatable module opened with pyelftools, with its relocations indexed by
    (section, offset) so an initialiser's pointer fields can be followed."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        self._section_bytes: dict[int, bytes] = {}
        with foreign(path, "ELF file", ELF_ERRORS, BadKo):
            self.elf = ELFFile(io.BytesIO(data))
            self._check_header()
            self.symtab = self._symtab()
            self.relocs = self._index_relocations()

    def _check_header(self) -> None:
        if self.elf.elfclass != 64 or self.elf["e_machine"] != EM_X86_64:
            raise BadKo(
                f"{self.path}: a module for {self.elf['e_machine']} "
                f"(ELF{self.elf.elfclass}), not x86_64"
            )
        if self.elf["e_type"] != "ET_REL":
            raise BadKo(f"{self.path}: not a kernel module (ELF type {self.elf['e_type']})")

    def _symtab(self) -> SymbolTableSection:
        symtab = self.elf.get_section_by_name(".symtab")
        if not isinstance(symtab, SymbolTableSection):
            raise BadKo(f"{self.path}: no symbol table (stripped?): a module needs one")
        return symtab

    def _index_relocations(self) -> dict[tuple[int, int], tuple[int, int]]:
        """(section, offset) -> (symbol index, addend) of every R_X86_64_64."""
        index: dict[tuple[int, int], tuple[int, int]] = {}
        for section in self.elf.iter_sections():
            if not isinstance(section, RelocationSection) or not section.is_RELA():
                continue
            applies_to = section["sh_info"]
            if self.elf.get_section(applies_to).name.startswith(".debug"):
                continue
            for reloc in section.iter_relocations():
                if reloc["r_info_type"] == 1:  # R_X86_64_64: an initialised pointer
                    key = (applies_to, reloc["r_offset"])
                    index[key] = (reloc["r_info_sym"], reloc["r_addend"])
        return index

    def bytes_of(self, section: int) -> bytes:
        cache = self._section_bytes
        if section not in cache:
            sec: Section = self.elf.get_section(section)
            cache[section] = b"" if sec["sh_type"] == "SHT_NOBITS" else sec.data()
        return cache[section]

    def pointer(self, at: Target) -> Target | None:
        """Where the pointer stored at `at` points (None: NULL or external symbol)."""
        found = self.relocs.get((at.section, at.offset))
        if found is None:
            return None
        symbol = self.symtab.get_symbol(found[0])
        shndx = symbol["st_shndx"]
        if not isinstance(shndx, int) or shndx == 0:
            return None  # undefined (another module's or the kernel's symbol)
        return Target(shndx, symbol["st_value"] + found[1])

    def symbol_at(self, at: Target) -> str:
        """The name of a function symbol starting at `at` ("" if none)."""
        for symbol in self.symtab.iter_symbols():
            if (
                symbol["st_shndx"] == at.section
                and symbol["st_value"] == at.offset
                and symbol["st_info"]["type"] == "STT_FUNC"
            ):
                return str(symbol.name)
        return ""

    def has_pointer(self, at: Target) -> bool:
        return (at.section, at.offset) in self.relocs

    def string(self, at: Target) -> str:
        data = self.bytes_of(at.section)
        end = data.find(b"\0", at.offset)
        if end < 0:
            raise BadKo(f"{self.path}: unterminated string in section {at.section}")
        return data[at.offset : end].decode(errors="replace")

    def integer(self, at: Target, size: int) -> int:
        data = self.bytes_of(at.section)
        if not data:
            return 0  # .bss
        fmt = {1: "<B", 4: "<I", 8: "<Q"}[size]
        return int(struct.unpack_from(fmt, data, at.offset)[0])

    def this_module_relocs(self) -> Iterator[Target]:
        """Every place an initialiser stores `THIS_MODULE`."""
        for (section, offset), (sym, _addend) in self.relocs.items():
            if self.symtab.get_symbol(sym).name == "__this_module":
                yield Target(section, offset)


def read_patch(path: Path, layout: KlpLayout) -> KoPatch:
    """The static klp_patch of the livepatch module at `path`; a damaged file is one
    UsageError."""
    ko = KoFile(path, read_input(path, KO_LIMIT, "module"))
    with foreign(path, "ELF file", ELF_ERRORS, BadKo):
        return _read_patch(ko, layout)


def _read_patch(ko: KoFile, layout: KlpLayout) -> KoPatch:
    path = ko.path
    candidates = []
    for mod_field in ko.this_module_relocs():
        start = Target(mod_field.section, mod_field.offset - layout.patch_mod)
        objs = ko.pointer(Target(start.section, start.offset + layout.patch_objs))
        if objs is not None:
            candidates.append((start, objs))
    if len(candidates) != 1:
        what = "no" if not candidates else f"{len(candidates)}"
        raise BadKo(
            f"{path}: {what} static struct klp_patch with .mod = THIS_MODULE found "
            f"({_generated_by(ko) or 'a patch assembled at run time'} cannot be read "
            "from the file)"
        )
    start, objs = candidates[0]
    return KoPatch(
        objects=tuple(_objects(ko, objs, layout)),
        states=tuple(_states(ko, start, layout)),
        replace=ko.integer(Target(start.section, start.offset + layout.patch_replace), 1) != 0,
    )


# Sections of generated livepatch modules whose klp_patch is built by their init.
GENERATORS = {
    ".kpatch.funcs": "a kpatch-build module (its patch is built at load from .kpatch.funcs)",
    "__klp_objects": "a klp-build module (its patch is built at load from __klp_objects)",
}


def _generated_by(ko: KoFile) -> str:
    for section in ko.elf.iter_sections():
        if section.name in GENERATORS:
            return GENERATORS[section.name]
    return ""


def _entries(start: Target, size: int) -> Iterator[Target]:
    for index in range(MAX_ENTRIES):
        yield Target(start.section, start.offset + index * size)


def _objects(ko: KoFile, objs: Target, layout: KlpLayout) -> Iterator[KoObject]:
    """klp_for_each_object_static: until an entry with neither name nor funcs."""
    for entry in _entries(objs, layout.object_size):
        name_at = Target(entry.section, entry.offset + layout.object_name)
        funcs = ko.pointer(Target(entry.section, entry.offset + layout.object_funcs))
        if funcs is None and not ko.has_pointer(name_at):
            return
        if funcs is None:
            raise BadKo(f"{ko.path}: a klp_object without funcs")
        name_ptr = ko.pointer(name_at)
        yield KoObject(
            name=ko.string(name_ptr) if name_ptr is not None else None,
            funcs=tuple(_funcs(ko, funcs, layout)),
            callbacks=_callbacks(ko, Target(entry.section, entry.offset + layout.object_callbacks)),
        )
    raise BadKo(f"{ko.path}: klp_object array without its terminating entry")


def _callbacks(ko: KoFile, callbacks: Target) -> frozenset[Callback]:
    """The callbacks set in a `struct klp_callbacks` (four function pointers)."""
    return frozenset(
        callback
        for i, callback in enumerate(CALLBACK_ORDER)
        if ko.has_pointer(Target(callbacks.section, callbacks.offset + 8 * i))
    )


def _funcs(ko: KoFile, funcs: Target, layout: KlpLayout) -> Iterator[KoFunc]:
    """klp_for_each_func_static: until an entry with neither old_name nor new_func."""
    for entry in _entries(funcs, layout.func_size):
        name = ko.pointer(Target(entry.section, entry.offset + layout.func_old_name))
        new_at = Target(entry.section, entry.offset + layout.func_new_func)
        if name is None and not ko.has_pointer(new_at):
            return
        if name is None:
            raise BadKo(f"{ko.path}: a klp_func without old_name")
        new = ko.pointer(new_at)
        yield KoFunc(
            name=ko.string(name),
            sympos=ko.integer(Target(entry.section, entry.offset + layout.func_old_sympos), 8),
            new_func=ko.symbol_at(new) if new is not None else "",
        )
    raise BadKo(f"{ko.path}: klp_func array without its terminating entry")


def _states(ko: KoFile, patch: Target, layout: KlpLayout) -> Iterator[tuple[int, int]]:
    """klp_for_each_state: until an entry whose id is 0."""
    states = ko.pointer(Target(patch.section, patch.offset + layout.patch_states))
    if states is None:
        return
    for entry in _entries(states, layout.state_size):
        state_id = ko.integer(Target(entry.section, entry.offset + layout.state_id), 8)
        if state_id == 0:
            return
        version = ko.integer(Target(entry.section, entry.offset + layout.state_version), 4)
        yield state_id, version
