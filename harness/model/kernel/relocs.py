"""Livepatch relocations of a patch's module objects: written when the object is
loaded, cleared (from v6.3) when it goes.

A patch object with `klp_relocs` (harness/modules/klprela.py) has one R_X86_64_64
klp relocation into its target.  The livepatch core writes it in
klp_init_object_loaded(), before it resolves the funcs (6.1 core.c:800-810, 6.12
:852-856, 7.3 :874-878): for an object loaded when the patch initialises
(klp_init_object, 6.1 :868-869) or one that comes later (klp_module_coming, :1217).
x86's apply_relocate_add() refuses a slot that is not zero: 6.1
arch/x86/kernel/module.c:166-168 and :210-213 ("Skipping invalid relocation target,
existing value is nonzero ..." and -ENOEXEC), 6.12 :149-153 ("Invalid relocation
target, ...").  6.1's going hook only forgets the module (core.c:1182,
klp_free_object_loaded), so the slot keeps the old address and the object's next
coming fails: the reported bug.  6.12 and 7.3 clear it first (klp_clear_object_relocs,
6.12 core.c:1227, 7.3 :1262; `ModelProfile.klp_relocs_cleared`), but only for the
patches the going hook, or a failed coming hook, cleans up: a patch whose own coming
failed after its relocations were written (a failed pre_patch callback) keeps them
written on every profile (6.12 core.c:1300-1309 cleans the patches before it):
finding 6 of docs/findings.md, `ModelProfile.failed_coming_keeps_relocs`.
"""

from __future__ import annotations

import errno
import re

from harness.model.kernel.klp import KlpObject
from harness.model.kernel.system import Kernel
from harness.model.variants import Variant

# pr_fmt of arch/x86/kernel/module.c (KBUILD_MODNAME ": ", line 7 in 6.1, 6.12, 7.3)
ARCH_MODULE = "module: "
R_X86_64_64 = 1  # the relocation type of the pointer the template emits (elf.h)
_PTR = re.compile(r"\bPTR(\d+)\b")
SECTION_INDEX = "SEC"  # a relocation section's index, as the runner reads it


def _fresh_pointers(k: Kernel, count: int) -> list[str]:
    """Names the runner gives `count` new 16-digit hex values in this step's log
    (harness/runner/observe.py:normalize_pointers numbers them in first-seen order,
    PTR0 being NULL): the printed values are an address and a hashed pointer, which
    no model can know, only that they are new."""
    used = [int(n) for line in k.log for n in _PTR.findall(line)]
    first = max(used, default=0) + 1
    return [f"PTR{first + i}" for i in range(count)]


def _nonzero_line(k: Kernel, obj: KlpObject) -> str:
    """x86's line for a slot that is not zero (`loc`, hashed on 6.1 and 6.12, and `val`,
    the symbol's new address: both 16 hex digits on x86_64)."""
    loc, val = _fresh_pointers(k, 2)
    # 7.3 arch/x86/kernel/module.c:151-153 also names the relocation section's index in
    # the patch's .ko (the build decides it: the runner reads it as SEC,
    # harness/runner/observe.py:normalize_reloc_sections) and the entry's: the first of
    # the object's first section, as every entry was written at the earlier coming and
    # the loop (:100) stops at the first nonzero slot (:150-154)
    where = f"sec {SECTION_INDEX}, idx 0, " if k.profile.reloc_error_names_section else ""
    wording = "Invalid" if k.profile.klp_relocs_cleared else "Skipping invalid"
    return (
        f"{ARCH_MODULE}x86/modules: {wording} relocation target, existing value is "
        f"nonzero for {where}type {R_X86_64_64}, loc {loc}, val {val}"
    )


def klp_apply_object_relocs(k: Kernel, obj: KlpObject) -> int:
    """Write the object's klp relocations: 0, or -ENOEXEC with x86's line when the
    slot still holds what an earlier instance of the object got."""
    if not obj.klp_relocs:
        return 0
    if obj.relocs_written:
        k.log.append(_nonzero_line(k, obj))
        return -errno.ENOEXEC
    obj.relocs_written = True
    return 0


def klp_clear_object_relocs(k: Kernel, obj: KlpObject) -> None:
    """The going hook's clearing (v6.3); nothing on 6.1."""
    cleared = k.profile.klp_relocs_cleared
    if k.variant in (Variant.KLP_RELOCS_KEPT, Variant.KLP_RELOCS_CLEARED):
        cleared = k.variant is Variant.KLP_RELOCS_CLEARED
    if cleared:
        obj.relocs_written = False
