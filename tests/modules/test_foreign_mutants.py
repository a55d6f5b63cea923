"""Every reader of a module's foreign bytes, fed hundreds of damaged copies of real
modules: each copy is read or refused in one line (a UsageError, exit 2), never a
traceback, a hang or a memory blow-up.

The copies are seeded (the same every run): bytes flipped anywhere, bytes flipped in
the ELF and section headers (where a parser's offsets and counts come from), and
truncations.  The modules are the kernel's samples and a selftest module
(tests/data/ko/: ELF, modinfo, symbols, klp_patch initialisers, relocations), a small
object compiled here with DWARF (gcc -g), and a BTF blob written here (a FUNC, its
FUNC_PROTO and their types).
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.modules import dwarf, klprela
from harness.modules.elf import read_patch
from harness.modules.external import check_file, module_name_of
from harness.modules.ko import BadModule, read_modinfo
from harness.modules.signatures import module_btf
from harness.symbols import btf
from harness.symbols.data import module_symbols
from tests.modules.test_elf import DATA, LAYOUT_61, PROFILE

SEED = 29
MUTANTS_PER_FILE = 60  # x 5 modules, + DWARF and BTF: over 400 in all
Reader = Callable[[Path], object]

READERS: dict[str, Reader] = {
    "check_file": lambda path: check_file(path, PROFILE, livepatch=True),
    "module_name_of": lambda path: module_name_of(str(path), path.parent),
    "read_patch": lambda path: read_patch(path, LAYOUT_61),
    "klprela.read": klprela.read,
    "module_symbols": module_symbols,
    "dwarf.prototypes": lambda path: dwarf.prototypes(path, {"f", "g"}, required=False),
    "module_btf": module_btf,
}


def mutants(data: bytes, count: int, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """`count` damaged copies of `data`: a third flipped anywhere, a third in the
    headers, a third truncated."""
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    (shnum,) = struct.unpack_from("<H", data, 0x3C)
    headers = [*range(0, 64), *range(shoff, min(len(data), shoff + 64 * shnum))]
    for index in range(count):
        copy = bytearray(data)
        kind = index % 3
        if kind == 2:
            cut = rng.randrange(len(data))
            yield f"truncated at {cut}", bytes(copy[:cut])
            continue
        places = headers if kind == 1 else range(len(data))
        flips = [rng.choice(places) for _ in range(rng.randint(1, 8))]
        for at in flips:
            copy[at] = rng.randrange(256)
        yield f"{'header' if kind == 1 else 'any'} bytes {flips}", bytes(copy)


def read_all(path: Path, what: str) -> None:
    """Every reader on `path`: a result or one UsageError line, nothing else."""
    for name, reader in READERS.items():
        try:
            reader(path)
        except UsageError as exc:
            assert "\n" not in str(exc), f"{what}, {name}: {exc!r}"
            assert str(exc).startswith(str(path)), f"{what}, {name}: {exc}"
        except BadModule as exc:  # read_modinfo's own (a build cache entry): one line too
            assert "\n" not in str(exc), f"{what}, {name}: {exc!r}"
        except Exception as exc:
            pytest.fail(f"{what}: {name} raised {type(exc).__name__}: {exc}")


@pytest.fixture(scope="module")
def dwarf_object(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small x86_64 relocatable object with DWARF, as a module's would be."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    tmp = tmp_path_factory.mktemp("dwarf")
    (tmp / "f.c").write_text(
        "struct s { int a; long b; };\n"
        "int f(const struct s *p, unsigned char c, ...) { return p->a + c; }\n"
        "static inline double g(volatile int *x) { return *x; }\n"
        "double h(int *x) { return g(x); }\n"
    )
    subprocess.run(["gcc", "-g", "-O1", "-c", "f.c", "-o", "f.o"], cwd=tmp, check=True)
    return (tmp / "f.o").read_bytes()


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.ko")))
def test_damaged_modules_are_read_or_refused_in_one_line(name: str, tmp_path: Path) -> None:
    rng = random.Random(f"{SEED}:{name}")
    original = (DATA / name).read_bytes()
    read_all(DATA / name, name)  # the undamaged one, through the same readers
    for index, (what, data) in enumerate(mutants(original, MUTANTS_PER_FILE, rng)):
        path = tmp_path / f"m{index}.ko"
        path.write_bytes(data)
        read_all(path, f"{name}, {what}")


def test_damaged_dwarf_is_read_or_refused_in_one_line(dwarf_object: bytes, tmp_path: Path) -> None:
    original = tmp_path / "f.o"
    original.write_bytes(dwarf_object)
    assert set(dwarf.prototypes(original, {"f", "h"})) == {"f", "h"}
    rng = random.Random(f"{SEED}:dwarf")
    debug = [*range(len(dwarf_object) // 4, len(dwarf_object))]  # where .debug_* sit
    for index in range(MUTANTS_PER_FILE):
        copy = bytearray(dwarf_object)
        flips = [rng.choice(debug) for _ in range(rng.randint(1, 8))]
        for at in flips:
            copy[at] = rng.randrange(256)
        path = tmp_path / f"d{index}.o"
        path.write_bytes(bytes(copy))
        try:
            dwarf.prototypes(path, {"f", "h"}, required=False)
        except UsageError as exc:
            assert "\n" not in str(exc)
        except Exception as exc:
            pytest.fail(f"DWARF bytes {flips}: {type(exc).__name__}: {exc}")


def btf_blob() -> bytes:
    """BTF for `int f(const int *, ...)`: INT, CONST, PTR, FUNC_PROTO, FUNC."""
    strings = b"\0int\0f\0p\0"
    types = b"".join([
        struct.pack("<III", 1, btf.INT << 24, 4) + struct.pack("<I", 32),  # 1: int
        struct.pack("<III", 0, btf.CONST << 24, 1),  # 2: const int
        struct.pack("<III", 0, btf.PTR << 24, 2),  # 3: const int *
        struct.pack("<III", 0, btf.FUNC_PROTO << 24 | 2, 1) + struct.pack("<IIII", 7, 3, 0, 0),
        struct.pack("<III", 5, btf.FUNC << 24, 4),  # 5: f
    ])  # fmt: skip
    header = struct.pack("<HBBIIIII", btf.MAGIC, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def test_damaged_btf_is_read_or_refused_in_one_line() -> None:
    blob = btf_blob()
    [proto] = btf.prototypes(btf.parse(blob), "f")
    assert len(proto.params) == 2  # the pointer and the ellipsis
    rng = random.Random(f"{SEED}:btf")
    for index in range(4 * MUTANTS_PER_FILE):
        copy = bytearray(blob)
        if index % 4 == 3:
            copy = copy[: rng.randrange(len(copy))]
        else:
            for _ in range(rng.randint(1, 4)):
                copy[rng.randrange(len(copy))] = rng.randrange(256)
        try:
            btf.prototypes(btf.parse(bytes(copy)), "f")
        except UsageError as exc:
            assert "\n" not in str(exc)
        except Exception as exc:
            pytest.fail(f"BTF mutant {index}: {type(exc).__name__}: {exc}")


def test_modinfo_of_damaged_modules_is_one_line(tmp_path: Path) -> None:
    rng = random.Random(f"{SEED}:modinfo")
    original = (DATA / "livepatch-sample.ko").read_bytes()
    for index, (what, data) in enumerate(mutants(original, 3 * MUTANTS_PER_FILE, rng)):
        path = tmp_path / f"m{index}.ko"
        path.write_bytes(data)
        try:
            read_modinfo(path)
        except (BadModule, UsageError) as exc:
            assert "\n" not in str(exc), what
