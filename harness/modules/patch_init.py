"""What a generated livepatch module's init sets that no section holds: `replace`.

kpatch-build's patch hook and klp-build's init.c build the `struct klp_patch` at
load time, and take `replace` from the preprocessor: `lpatch->replace =
KLP_REPLACE_ENABLE` (true, false with kpatch-build --non-replace) and `patch->replace
= true` (false with klp-build --no-replace, `-DKLP_NO_REPLACE`).  The value is an
immediate in the init's code.  gcc stores both fields from the same register, the
klp_patch just allocated:

    48 c7 00 <__this_module>   movq $__this_module, (%rax)    .mod = THIS_MODULE
    c6 40 18 01                movb $1, 0x18(%rax)            .replace = true

so: the init function (`init_module`, the alias module_init() makes); every store of
THIS_MODULE into memory in it (a relocation against `__this_module` in the immediate
of `mov $imm32, disp(base)`) at the offset of `klp_patch.mod`, which names the
register; and every `movb $0|$1, disp8(base)` at the offset of `klp_patch.replace`
from that register.  One value, or the file is refused in one line: an init this
reader does not know is not guessed at.
"""

from __future__ import annotations

from elftools.elf.relocation import RelocationSection

from harness.modules.elf import BadKo, KoFile
from harness.modules.layout import KlpLayout

INIT_SYMBOL = "init_module"
THIS_MODULE = "__this_module"
_MOV_IMM32 = 0xC7  # mov $imm32, r/m64 (with REX.W), /0
_MOV_IMM8 = 0xC6  # mov $imm8, r/m8, /0


def init_code(ko: KoFile, who: str) -> tuple[int, int, bytes]:
    """(section, start, bytes) of the module's init function."""
    for symbol in ko.symtab.iter_symbols():
        shndx = symbol["st_shndx"]
        if (
            symbol.name == INIT_SYMBOL
            and symbol["st_info"]["type"] == "STT_FUNC"
            and isinstance(shndx, int)
            and shndx != 0
        ):
            start, size = symbol["st_value"], symbol["st_size"]
            code = ko.bytes_of(shndx)[start : start + size]
            if size == 0 or len(code) != size:
                break
            return shndx, start, code
    raise BadKo(f"{ko.path}: no init function ({INIT_SYMBOL}): {who} builds its klp_patch there")


def _rex(code: bytes, at: int) -> int:
    return code[at] if at >= 0 and 0x40 <= code[at] <= 0x4F else 0


def _mod_store_base(code: bytes, imm: int, patch_mod: int) -> int | None:
    """The base register of `mov $imm32, disp(base)` whose immediate is at `imm`, if
    it stores at displacement `patch_mod` (None: another instruction)."""
    for back in range(2, 5):  # opcode, ModRM, [SIB], [disp8]
        op = imm - back
        if op < 0 or code[op] != _MOV_IMM32:
            continue
        modrm = code[op + 1]
        mod, reg, rm = modrm >> 6, (modrm >> 3) & 7, modrm & 7
        if reg != 0 or mod not in (0, 1) or (mod == 0 and rm == 5):
            continue
        sib = rm == 4
        if op + 2 + sib + (mod == 1) != imm:
            continue
        base = code[op + 2] & 7 if sib else rm
        disp = int.from_bytes(code[imm - 1 : imm], "little", signed=True) if mod == 1 else 0
        if disp == patch_mod:
            return base | (_rex(code, op - 1) & 1) << 3
    return None


def _byte_stores(code: bytes, offset: int) -> list[tuple[int, int]]:
    """(base register, value) of every `movb $0|$1, offset(base)` in `code`."""
    found = []
    for op in range(len(code) - 3):
        if code[op] != _MOV_IMM8:
            continue
        modrm = code[op + 1]
        if modrm >> 6 != 1 or (modrm >> 3) & 7 != 0:
            continue
        rm = modrm & 7
        at = op + 2
        if rm == 4:
            if code[at] != 0x24:  # (%rsp) or (%r12) alone, no index
                continue
            at += 1
        if at + 1 >= len(code) or code[at] != offset or code[at + 1] not in (0, 1):
            continue
        found.append((rm | (_rex(code, op - 1) & 1) << 3, code[at + 1]))
    return found


def _this_module_immediates(ko: KoFile, section: int, start: int, size: int) -> list[int]:
    """Offsets in the init's code of relocations against __this_module."""
    found = []
    for rela in ko.elf.iter_sections():
        if not isinstance(rela, RelocationSection) or rela["sh_info"] != section:
            continue
        for reloc in rela.iter_relocations():
            at = reloc["r_offset"] - start
            if 0 <= at < size and ko.symtab.get_symbol(reloc["r_info_sym"]).name == THIS_MODULE:
                found.append(at)
    return found


def replace_set_by_init(ko: KoFile, layout: KlpLayout, who: str) -> bool:
    """The value the module's init stores into klp_patch.replace."""
    section, start, code = init_code(ko, who)
    bases = {
        base
        for imm in _this_module_immediates(ko, section, start, len(code))
        if (base := _mod_store_base(code, imm, layout.patch_mod)) is not None
    }
    if not bases:
        raise BadKo(f"{ko.path}: its init stores THIS_MODULE in no klp_patch ({who} unknown)")
    values = {value for base, value in _byte_stores(code, layout.patch_replace) if base in bases}
    if len(values) != 1:
        what = "no" if not values else "both true and false as"
        raise BadKo(
            f"{ko.path}: its init sets {what} klp_patch.replace: not {who} as this reader knows it"
        )
    return values.pop() == 1
