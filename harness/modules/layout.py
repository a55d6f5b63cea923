"""Where the fields of `struct klp_patch`, `klp_object`, `klp_func` and `klp_state`
lie in a profile's kernel, measured by its own compiler and headers.

A livepatch module's static structures are initialised data: to read them from the
file (`harness.modules.elf`) one needs each struct's size (arrays are walked by it)
and the offsets of the fields a patch author sets.  The sizes depend on the kernel's
configuration (the structs embed a kobject and list heads), so they are not hard-coded:
a tiny module of `sizeof`/`offsetof` constants is built once per profile by the cached
module build and the constants are read back from its `.rodata` (no guest needed).
The fields read (include/linux/livepatch.h, 6.1..7.3): klp_func.old_name, new_func,
old_sympos; klp_object.name, funcs, callbacks (four pointers); klp_patch.mod, objs,
states, replace; klp_state.id, version.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from functools import cache

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from harness.errors import HarnessError
from harness.kernel.profiles import KernelProfile
from harness.modules.build import build_sources

PROBE = "klp_harness_layout"


@dataclass(frozen=True)
class KlpLayout:
    """Sizes and field offsets in bytes, in the order the probe emits them."""

    patch_size: int
    patch_mod: int
    patch_objs: int
    patch_states: int
    patch_replace: int
    object_size: int
    object_name: int
    object_funcs: int
    object_callbacks: int
    func_size: int
    func_old_name: int
    func_new_func: int
    func_old_sympos: int
    state_size: int
    state_id: int
    state_version: int


_EXPRESSIONS = {
    "patch_size": "sizeof(struct klp_patch)",
    "patch_mod": "offsetof(struct klp_patch, mod)",
    "patch_objs": "offsetof(struct klp_patch, objs)",
    "patch_states": "offsetof(struct klp_patch, states)",
    "patch_replace": "offsetof(struct klp_patch, replace)",
    "object_size": "sizeof(struct klp_object)",
    "object_name": "offsetof(struct klp_object, name)",
    "object_funcs": "offsetof(struct klp_object, funcs)",
    "object_callbacks": "offsetof(struct klp_object, callbacks)",
    "func_size": "sizeof(struct klp_func)",
    "func_old_name": "offsetof(struct klp_func, old_name)",
    "func_new_func": "offsetof(struct klp_func, new_func)",
    "func_old_sympos": "offsetof(struct klp_func, old_sympos)",
    "state_size": "sizeof(struct klp_state)",
    "state_id": "offsetof(struct klp_state, id)",
    "state_version": "offsetof(struct klp_state, version)",
}


def probe_source() -> str:
    """The C of the probe module: one array of the constants, nothing that runs."""
    values = ",\n".join(f"\t{_EXPRESSIONS[f.name]}" for f in fields(KlpLayout))
    return (
        "#include <linux/module.h>\n#include <linux/livepatch.h>\n\n"
        f"const unsigned long {PROBE}[] __used = {{\n{values}\n}};\n"
        'MODULE_LICENSE("GPL");\n'
    )


def read_probe(data: ELFFile) -> KlpLayout:
    """The constants of a built probe module."""
    symtab = data.get_section_by_name(".symtab")
    if not isinstance(symtab, SymbolTableSection):
        raise HarnessError("layout probe: no symbol table")
    for symbol in symtab.iter_symbols():
        if symbol.name == PROBE:
            section = data.get_section(symbol["st_shndx"])
            start = symbol["st_value"]
            raw = section.data()[start : start + symbol["st_size"]]
            count = len(fields(KlpLayout))
            return KlpLayout(*struct.unpack_from(f"<{count}Q", raw))
    raise HarnessError(f"layout probe: no symbol {PROBE}")


@cache
def layout_for(profile: KernelProfile) -> KlpLayout:
    """The layout of `profile`'s kernel (the probe built once, then cached)."""

    result = build_sources({PROBE: probe_source()}, profile)
    with result.modules[PROBE].open("rb") as stream:
        return read_probe(ELFFile(stream))
