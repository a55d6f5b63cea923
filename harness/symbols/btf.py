"""Function prototypes from BTF (include/uapi/linux/btf.h), as shapes a body must match.

BTF is a header, a type section and a string section.  A type is three u32 (name
offset, info: kind in bits 24-28 and vlen in bits 0-15, size or referenced type)
followed by kind-specific data; type ids count from 1 (0 is void).  A FUNC refers to
a FUNC_PROTO whose params follow it as (name offset, type) pairs; a vararg function
ends with a param of type 0.  Split BTF (a module's `.BTF` against vmlinux's) numbers
its types after the base's and its strings after the base's string section.

pyelftools does not read BTF; the format is small, so this parses it directly
(little-endian only: every profile is x86_64).
"""

from __future__ import annotations

import struct
from collections import defaultdict
from dataclasses import dataclass, field

from harness.errors import UsageError
from harness.host.inputs import foreign
from harness.symbols.shapes import ELLIPSIS, VOID, Prototype, Shape

MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT = 9, 10, 11, 12, 13, 14, 15, 16
DECL_TAG, TYPE_TAG, ENUM64 = 17, 18, 19
_QUALIFIERS = {TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG}

# bytes of kind-specific data after a type: fixed, and per vlen item
_FIXED = {INT: 4, ARRAY: 12, VAR: 4, DECL_TAG: 4}
_PER_ITEM = {STRUCT: 12, UNION: 12, ENUM: 8, FUNC_PROTO: 8, DATASEC: 12, ENUM64: 12}


class BadBtf(UsageError):
    """Malformed BTF (one line, exit 2): what `parse` finds wrong, or any other
    failure of its reading, through `parse`'s guard."""


@dataclass
class Types:
    """Every type of a BTF blob (and of its base, for split BTF), by id."""

    kinds: list[int] = field(default_factory=lambda: [0])
    names: list[str] = field(default_factory=lambda: [""])
    sizes: list[int] = field(default_factory=lambda: [0])  # size, or the referenced type
    params: dict[int, list[int]] = field(default_factory=dict)  # FUNC_PROTO -> param types
    funcs: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    strings: bytes = b""


def parse(blob: bytes, base: Types | None = None) -> Types:
    """The types of `blob`; with `base`, `blob` is split BTF on top of it.  Malformed
    BTF is one UsageError."""
    with foreign("BTF", "type information"):
        return _parse(blob, base)


def _parse(blob: bytes, base: Types | None) -> Types:
    if len(blob) < _HEADER.size:
        raise BadBtf("BTF: shorter than its header")
    magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(
        blob
    )
    if magic != MAGIC:
        raise BadBtf(f"BTF: bad magic 0x{magic:x}")
    strings = blob[hdr_len + str_off : hdr_len + str_off + str_len]
    types = Types() if base is None else _copy(base)
    types.strings = types.strings + strings
    pos, end = hdr_len + type_off, hdr_len + type_off + type_len
    while pos < end:
        name_off, info, size = _TYPE.unpack_from(blob, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        pos += _TYPE.size
        ident = len(types.kinds)
        name = _string(types.strings, name_off)
        types.kinds.append(kind)
        types.names.append(name)
        types.sizes.append(size)
        if kind == FUNC_PROTO:
            types.params[ident] = [
                struct.unpack_from("<I", blob, pos + 8 * i + 4)[0] for i in range(vlen)
            ]
        elif kind == FUNC:
            types.funcs[name].append(ident)
        pos += _FIXED.get(kind, 0) + _PER_ITEM.get(kind, 0) * vlen
    return types


def _copy(base: Types) -> Types:
    return Types(
        list(base.kinds),
        list(base.names),
        list(base.sizes),
        dict(base.params),
        defaultdict(list, {k: list(v) for k, v in base.funcs.items()}),
        base.strings,
    )


def _string(strings: bytes, offset: int) -> str:
    end = strings.find(b"\0", offset)
    return strings[offset : end if end >= 0 else len(strings)].decode(errors="replace")


def shape(types: Types, ident: int) -> Shape:
    """What a parameter or return type is, as far as a call is concerned."""
    return _shape(types, ident).spelled(spell(types, ident))


def _shape(types: Types, ident: int) -> Shape:
    seen = 0
    while types.kinds[ident] in _QUALIFIERS and seen < 64:
        ident, seen = types.sizes[ident], seen + 1
    if ident == 0:
        return VOID
    kind, size, name = types.kinds[ident], types.sizes[ident], types.names[ident]
    if kind == PTR:
        return Shape("pointer")
    if kind in (INT, ENUM, ENUM64):
        return Shape("int", size)
    if kind == FLOAT:
        return Shape("float", size)
    if kind in (STRUCT, UNION):
        return Shape("struct" if kind == STRUCT else "union", size, name)
    if kind == FWD:  # never by value: only for completeness
        return Shape("struct", name=name)
    return Shape(f"btf-kind-{kind}", size, name)


_TAGS = {STRUCT: "struct ", UNION: "union ", ENUM: "enum ", ENUM64: "enum ", FWD: "struct "}


def spell(types: Types, ident: int, depth: int = 0) -> str:
    """A C spelling of a type, for messages."""
    kind = types.kinds[ident]
    if ident == 0 or depth > 16:
        return "void"
    if kind == PTR:
        target = types.sizes[ident]
        if types.kinds[target] == FUNC_PROTO:
            return "function pointer"
        return spell(types, target, depth + 1) + " *"
    if kind in (CONST, VOLATILE):
        return ("const " if kind == CONST else "volatile ") + spell(
            types, types.sizes[ident], depth + 1
        )
    if kind in (RESTRICT, TYPE_TAG):
        return spell(types, types.sizes[ident], depth + 1)
    return _TAGS.get(kind, "") + types.names[ident]


def prototypes(types: Types, func: str) -> list[Prototype]:
    """The distinct prototypes BTF records for `func` (a static name may have several);
    types referring to ids BTF does not have are one UsageError."""
    with foreign("BTF", "type information"):
        return _prototypes(types, func)


def _prototypes(types: Types, func: str) -> list[Prototype]:
    found: list[Prototype] = []
    for ident in types.funcs.get(func, []):
        proto = types.sizes[ident]
        if types.kinds[proto] != FUNC_PROTO:
            continue
        params = tuple(
            ELLIPSIS if t == 0 and i == len(types.params[proto]) - 1 else shape(types, t)
            for i, t in enumerate(types.params[proto])
        )
        candidate = Prototype(shape(types, types.sizes[proto]), params)
        if candidate not in found:
            found.append(candidate)
    return found
