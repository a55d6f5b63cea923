"""The readers of kpatch-build's and klp-build's layouts, fed damaged copies of their
fixtures (tests/data/kpatch/, tests/data/klp-build/): each copy is read or refused in
one UsageError line naming the file (exit 2), never a traceback.  Seeded, as
test_foreign_mutants.py's: bytes flipped anywhere, in the headers, truncations, and
bytes flipped in the sections these readers walk (the format's sections, their
relocations, the init's code)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from harness.errors import UsageError
from harness.modules import klp_build_format, klprela, kpatch_format, patch_formats
from tests.modules.test_elf import LAYOUT_61
from tests.modules.test_foreign_mutants import mutants

SEED = 28
MUTANTS_PER_FILE = 40
DATA = Path(__file__).parents[1] / "data"
FIXTURES = sorted([*DATA.glob("kpatch/*.ko"), *DATA.glob("klp-build/*.ko")])
READERS: dict[str, Callable[[Path], object]] = {
    "format_of": patch_formats.format_of,
    "read_patch": lambda path: patch_formats.read_patch(path, LAYOUT_61),
    "kpatch_format": lambda path: kpatch_format.read_patch(path, LAYOUT_61),
    "klp_build_format": lambda path: klp_build_format.read_patch(path, LAYOUT_61),
    "klprela.read": klprela.read,
}
WALKED = (".kpatch.", ".rela.kpatch.", ".init.klp_", ".rela.init.klp_", ".init.text")


def format_bytes(path: Path) -> list[int]:
    """The file offsets of the sections the format readers walk."""
    with path.open("rb") as stream:
        elf = ELFFile(stream)
        return [
            offset
            for section in elf.iter_sections()
            if section.name.startswith(WALKED) and section["sh_type"] != "SHT_NOBITS"
            for offset in range(section["sh_offset"], section["sh_offset"] + section["sh_size"])
        ]


def targeted(data: bytes, places: list[int], count: int, rng: random.Random) -> Iterator[bytes]:
    for _ in range(count):
        copy = bytearray(data)
        for at in [rng.choice(places) for _ in range(rng.randint(1, 4))]:
            copy[at] = rng.randrange(256)
        yield bytes(copy)


def read_all(path: Path, what: str) -> None:
    for name, reader in READERS.items():
        try:
            reader(path)
        except UsageError as exc:
            assert "\n" not in str(exc), f"{what}, {name}: {exc!r}"
            assert str(exc).startswith(str(path)), f"{what}, {name}: {exc}"
        except Exception as exc:
            pytest.fail(f"{what}: {name} raised {type(exc).__name__}: {exc}")


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_damaged_tool_modules_are_read_or_refused_in_one_line(
    fixture: Path, tmp_path: Path
) -> None:
    rng = random.Random(f"{SEED}:{fixture.name}")
    original = fixture.read_bytes()
    read_all(fixture, fixture.name)
    copies = [data for _, data in mutants(original, MUTANTS_PER_FILE, rng)]
    copies += targeted(original, format_bytes(fixture), MUTANTS_PER_FILE, rng)
    for index, data in enumerate(copies):
        path = tmp_path / f"m{index}.ko"
        path.write_bytes(data)
        read_all(path, f"{fixture.name}, mutant {index}")
