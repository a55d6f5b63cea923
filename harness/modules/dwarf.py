"""Prototypes of a built module's functions, from its DWARF (pyelftools).

kbuild compiles modules with the kernel's -g (every profile's config has
CONFIG_DEBUG_INFO) and the harness keeps the .ko unstripped, so each function the
module defines has a DW_TAG_subprogram in the module's one compile unit, a direct
child of the unit's top DIE.  Its DW_TAG_formal_parameter children are the
parameters in order (DW_TAG_unspecified_parameters: `...`); no DW_AT_type means it
returns void.  An out-of-line copy of an inlined function refers to the DIE with the
types by DW_AT_abstract_origin; the DIE with the name is the one read here.
"""

from __future__ import annotations

import io
from collections.abc import Collection
from pathlib import Path

from elftools.dwarf.die import DIE
from elftools.elf.elffile import ELFFile

from harness.errors import UsageError
from harness.host.inputs import KO_LIMIT, foreign, read_input
from harness.symbols.data import ELF_ERRORS
from harness.symbols.shapes import ELLIPSIS, VOID, Prototype, Shape

_QUALIFIERS = {
    "DW_TAG_typedef",
    "DW_TAG_const_type",
    "DW_TAG_volatile_type",
    "DW_TAG_restrict_type",
    "DW_TAG_atomic_type",
}
_TAGS = {
    "DW_TAG_structure_type": "struct ",
    "DW_TAG_union_type": "union ",
    "DW_TAG_enumeration_type": "enum ",
}


def prototypes(ko: Path, names: Collection[str], required: bool = True) -> dict[str, Prototype]:
    """The prototypes of the functions `names` that `ko` defines (the ones it has).
    A file without DWARF is an error if `required`, else has none."""
    found: dict[str, Prototype] = {}
    data = read_input(ko, KO_LIMIT, "module")
    with foreign(ko, "DWARF", ELF_ERRORS):
        elf = ELFFile(io.BytesIO(data))
        if not elf.has_dwarf_info():
            if not required:
                return found
            raise UsageError(f"{ko}: no DWARF (built without -g?): cannot check prototypes")
        for unit in elf.get_dwarf_info().iter_CUs():
            for die in unit.get_top_DIE().iter_children():
                name = _name(die)
                if die.tag == "DW_TAG_subprogram" and name in names and name not in found:
                    found[name] = _prototype(die)
    return found


def _name(die: DIE) -> str:
    attr = die.attributes.get("DW_AT_name")
    return attr.value.decode(errors="replace") if attr is not None else ""


def _prototype(die: DIE) -> Prototype:
    params = []
    for child in die.iter_children():
        if child.tag == "DW_TAG_formal_parameter":
            params.append(_shape(child))
        elif child.tag == "DW_TAG_unspecified_parameters":
            params.append(ELLIPSIS)
    return Prototype(_shape(die), tuple(params))


def _type(die: DIE) -> DIE | None:
    return die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in die.attributes else None


def _shape(die: DIE) -> Shape:
    """The shape of the type of `die` (a parameter, or a function's return)."""
    target = _type(die)
    spelling = _spell(target)
    seen = 0
    while target is not None and target.tag in _QUALIFIERS and seen < 64:
        target, seen = _type(target), seen + 1
    if target is None:
        return VOID
    size = _size(target)
    if target.tag == "DW_TAG_pointer_type":
        return Shape("pointer", spelling=spelling)
    if target.tag == "DW_TAG_base_type":
        encoding = target.attributes.get("DW_AT_encoding")
        floating = encoding is not None and encoding.value == 0x04  # DW_ATE_float
        return Shape("float" if floating else "int", size, spelling=spelling)
    if target.tag == "DW_TAG_enumeration_type":
        return Shape("int", size, spelling=spelling)
    if target.tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
        kind = "struct" if target.tag == "DW_TAG_structure_type" else "union"
        return Shape(kind, size, _name(target), spelling)
    return Shape(str(target.tag).removeprefix("DW_TAG_"), size, _name(target), spelling)


def _size(die: DIE) -> int:
    attr = die.attributes.get("DW_AT_byte_size")
    return int(attr.value) if attr is not None else 0


def _spell(die: DIE | None, depth: int = 0) -> str:
    """A C spelling of a type, for messages."""
    if die is None or depth > 16:
        return "void"
    if die.tag == "DW_TAG_pointer_type":
        target = _type(die)
        if target is not None and target.tag == "DW_TAG_subroutine_type":
            return "function pointer"
        return _spell(target, depth + 1) + " *"
    if die.tag in ("DW_TAG_const_type", "DW_TAG_volatile_type"):
        word = "const " if die.tag == "DW_TAG_const_type" else "volatile "
        return word + _spell(_type(die), depth + 1)
    if die.tag in ("DW_TAG_restrict_type", "DW_TAG_atomic_type"):
        return _spell(_type(die), depth + 1)
    return _TAGS.get(str(die.tag), "") + _name(die)
