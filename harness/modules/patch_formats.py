"""Which reader a livepatch module's structure is read with, told by its sections:
kpatch-build's (`.kpatch.funcs`: harness.modules.kpatch_format), klp-build's
(`.init.klp_objects` or `__klp_objects`: harness.modules.klp_build_format), or a
static `struct klp_patch` (the kernel's samples style: harness.modules.elf).  Each
returns the same KoPatch, so the model predicts every one's life cycle alike.
"""

from __future__ import annotations

from pathlib import Path

from harness.host.inputs import KO_LIMIT, foreign, read_input
from harness.modules import elf, klp_build_format, kpatch_format
from harness.modules.elf import BadKo, KoFile, KoPatch
from harness.modules.layout import KlpLayout
from harness.symbols.data import ELF_ERRORS

STATIC = "a static struct klp_patch"


def format_of(path: Path) -> str:
    """The format (and version) of the livepatch module at `path`; a generated module
    of a variant no reader knows is one UsageError."""
    ko = KoFile(path, read_input(path, KO_LIMIT, "module"))
    with foreign(path, "ELF file", ELF_ERRORS, BadKo):
        return kpatch_format.detect(ko) or klp_build_format.detect(ko) or STATIC


def read_patch(path: Path, layout: KlpLayout) -> KoPatch:
    """The structure of the livepatch module at `path`, read by its format's reader."""
    found = format_of(path)
    if found == kpatch_format.VERSION:
        return kpatch_format.read_patch(path, layout)
    if found in klp_build_format.VERSIONS.values():
        return klp_build_format.read_patch(path, layout)
    return elf.read_patch(path, layout)
