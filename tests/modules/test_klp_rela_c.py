"""images/klp-rela.c, the reproducers' ELF rewrite, against harness/modules/klprela.py:
both convert the same object to the same bytes.  The object is a host `gcc -c` of
the pattern the templates emit (a weak undefined `.klp.sym` symbol, a pointer to it
alone in its section, an empty note section with the `.klp.rela` name): the rewrite
reads only the ELF, so a kernel module and a user-space object are alike to it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.export.repro import RELA_WRITER
from harness.modules import klprela

PATTERN = r"""
extern unsigned long ref_{i}[] asm("\".klp.sym.{obj}.target_funcs,0\"") __attribute__((weak));
static unsigned long *reloc_{i} __attribute__((used, section(".klp_refs.{obj}"))) = ref_{i};
asm(".pushsection \".klp.rela.{obj}..klp_refs.{obj}\", \"\", @note\n.popsection\n");
"""
STRAY = r"""
extern unsigned long plain[] __attribute__((weak));
static unsigned long *stray __attribute__((used, section(".klp_refs.{obj}"))) = plain;
"""


@pytest.fixture(scope="module")
def writer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.fail("no C compiler on the host: the reproducers' klp-rela cannot be tested")
    out = tmp_path_factory.mktemp("klp-rela") / "klp-rela"
    subprocess.run([cc, "-O2", "-Wall", "-Werror", "-o", str(out), str(RELA_WRITER)], check=True)
    return out


def _object(tmp_path: Path, source: str) -> Path:
    c = tmp_path / "patch.c"
    c.write_text(source)
    subprocess.run(["gcc", "-c", "-o", str(tmp_path / "patch.o"), str(c)], check=True)
    return tmp_path / "patch.o"


def _both(tmp_path: Path, source: str, writer: Path) -> tuple[Path, Path, int]:
    by_c = _object(tmp_path, source)
    by_python = tmp_path / "by-python.o"
    shutil.copy(by_c, by_python)
    klprela.convert(by_python)
    proc = subprocess.run([str(writer), str(by_c)], capture_output=True, text=True, check=False)
    return by_c, by_python, proc.returncode


def test_the_same_bytes_as_the_harness_for_two_objects(tmp_path: Path, writer: Path) -> None:
    source = PATTERN.format(i=0, obj="t_one") + PATTERN.format(i=1, obj="t_two")
    by_c, by_python, status = _both(tmp_path, source, writer)
    assert status == 0
    assert by_c.read_bytes() == by_python.read_bytes()
    sections = klprela.read(by_c)
    assert [s.objname for s in sections] == ["t_one", "t_two"]
    assert klprela.problems(sections) == []


def test_a_second_run_changes_nothing(tmp_path: Path, writer: Path) -> None:
    by_c, _, _ = _both(tmp_path, PATTERN.format(i=0, obj="t"), writer)
    once = by_c.read_bytes()
    proc = subprocess.run([str(writer), str(by_c)], capture_output=True, text=True, check=True)
    assert "0 section(s) converted" in proc.stdout
    assert by_c.read_bytes() == once


def test_a_symbol_that_is_not_klp_is_refused_and_nothing_written(
    tmp_path: Path, writer: Path
) -> None:
    source = PATTERN.format(i=0, obj="t") + STRAY.format(obj="t")
    obj = _object(tmp_path, source)
    before = obj.read_bytes()
    proc = subprocess.run([str(writer), str(obj)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "relocates against 'plain', not an undefined .klp.sym.* symbol" in proc.stderr
    assert obj.read_bytes() == before
    with pytest.raises(klprela.BadModule, match="relocates against 'plain'"):
        klprela.convert(obj)


def test_not_elf_and_no_arguments(tmp_path: Path, writer: Path) -> None:
    junk = tmp_path / "junk.ko"
    junk.write_bytes(b"not an ELF file at all")
    proc = subprocess.run([str(writer), str(junk)], capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stderr.strip()) == (
        1,
        f"klp-rela: {junk}: not a 64-bit little-endian ELF file",
    )
    assert subprocess.run([str(writer)], capture_output=True, check=False).returncode == 2
