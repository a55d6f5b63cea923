"""The two instructions harness/modules/patch_init.py looks for in a generated
module's init, in the encodings gcc picks for each base register: the store of
THIS_MODULE into klp_patch.mod and the byte store into klp_patch.replace."""

from __future__ import annotations

import pytest

from harness.modules.patch_init import _byte_stores, _mod_store_base

IMM = bytes(4)  # the relocated immediate: zero in the file
REPLACE = 24


@pytest.mark.parametrize(
    ("code", "base"),
    [
        (bytes([0x48, 0xC7, 0x00]) + IMM, 0),  # movq $m, (%rax)
        (bytes([0x48, 0xC7, 0x07]) + IMM, 7),  # movq $m, (%rdi)
        (bytes([0x49, 0xC7, 0x04, 0x24]) + IMM, 12),  # movq $m, (%r12): SIB
        (bytes([0x48, 0xC7, 0x45, 0x00]) + IMM, 5),  # movq $m, 0x0(%rbp): disp8
        (bytes([0x49, 0xC7, 0x45, 0x00]) + IMM, 13),  # movq $m, 0x0(%r13)
    ],
)
def test_the_mod_store_names_its_register(code: bytes, base: int) -> None:
    assert _mod_store_base(code, len(code) - 4, 0) == base


@pytest.mark.parametrize(
    "code",
    [
        bytes([0x48, 0xC7, 0xC7]) + IMM,  # mov $m, %rdi: an argument, not a store
        bytes([0x48, 0xC7, 0x40, 0x08]) + IMM,  # movq $m, 0x8(%rax): another field
        bytes([0x48, 0xC7, 0x05]) + IMM,  # RIP-relative
    ],
)
def test_other_uses_of_this_module_are_not_the_store(code: bytes) -> None:
    assert _mod_store_base(code, len(code) - 4, 0) is None


def test_byte_stores_at_the_replace_offset() -> None:
    code = b"".join(
        [
            bytes([0xC6, 0x40, REPLACE, 0x01]),  # movb $1, 0x18(%rax)
            bytes([0x41, 0xC6, 0x44, 0x24, REPLACE, 0x00]),  # movb $0, 0x18(%r12)
            bytes([0xC6, 0x47, REPLACE + 1, 0x01]),  # another offset
            bytes([0xC6, 0x47, REPLACE, 0x07]),  # not a bool
            bytes([0xC6, 0x80, REPLACE, 0, 0, 0, 1]),  # disp32: not what gcc emits here
            bytes([0x90, 0x90]),
        ]
    )
    assert _byte_stores(code, REPLACE) == [(0, 1), (12, 0)]
