"""The user's input files (harness.files.read_input): regular files of bounded size,
checked before any read, and what the readers built on it refuse (a scenario, a body
file, a module), each in one line.  A FIFO must not block and /dev/zero must not be
read: a SIGALRM ends a test that would hang."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import ScenarioError, UsageError
from harness.host.inputs import KO_LIMIT, read_input, read_input_text
from harness.modules.elf import BadKo
from harness.modules.external import ModuleFiles, check_file, module_name_of
from harness.scenario.loader import load_scenario
from tests.modules.test_elf import DATA, PROFILE

BODY_SCENARIO = """\
description = "a body in a file"
steps = ["load lp", "unload lp"]

[[patch]]
name = "lp"

[[patch.object]]
name = "vmlinux"
funcs = [{ name = "cmdline_proc_show", file = "body.c" }]
"""
KO_SCENARIO = 'description = "a module file"\nsteps = ["load x"]\n[[patch]]\nko = "x.ko"\n'


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    def hung(signum: int, frame: object) -> None:
        raise AssertionError("an input file was read without bound or blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def special(tmp_path: Path, kind: str, name: str) -> Path:
    """`name` in `tmp_path`: a FIFO, a link to /dev/zero, or a 1 TiB sparse file."""
    path = tmp_path / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    else:
        with path.open("wb") as out:
            out.truncate(1 << 40)
    return path


KINDS = {
    "fifo": "not a regular file (a FIFO)",
    "dev-zero": "not a regular file (a character device)",
    "directory": "not a regular file (a directory)",
    "huge": "has 1048576.0 MiB, more than the",
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_read_input_refuses_before_reading(tmp_path: Path, kind: str) -> None:
    path = special(tmp_path, kind, "input")
    with pytest.raises(UsageError) as info:
        read_input(path, KO_LIMIT, "module")
    assert str(info.value).startswith(f"{path}: the module ")
    assert KINDS[kind] in str(info.value)


def test_read_input_reads_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"abc\xff")
    assert read_input(path, 4, "x") == b"abc\xff"
    with pytest.raises(UsageError, match=r"has 4 bytes, more than the 3 bytes allowed"):
        read_input(path, 3, "x")
    with pytest.raises(UsageError, match=r"not UTF-8 text"):
        read_input_text(path, 4, "x")
    with pytest.raises(UsageError, match=r"cannot read the x: No such file"):
        read_input(tmp_path / "missing", 4, "x")


@pytest.mark.parametrize("kind", list(KINDS))
def test_scenario_file(tmp_path: Path, kind: str) -> None:
    path = special(tmp_path, kind, "s.toml")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}: file: the scenario ")
    assert KINDS[kind] in str(info.value)


@pytest.mark.parametrize("kind", list(KINDS))
def test_body_file(tmp_path: Path, kind: str) -> None:
    (tmp_path / "s.toml").write_text(BODY_SCENARIO)
    special(tmp_path, kind, "body.c")
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "s.toml")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 's.toml'}: patch[0].object[0].funcs[0]")
    assert "'body.c': the body file " in message and KINDS[kind] in message
    assert "\n" not in message


@pytest.mark.parametrize("kind", list(KINDS))
def test_module_file(tmp_path: Path, kind: str) -> None:
    path = special(tmp_path, kind, "x.ko")
    for read in (
        lambda: check_file(path, PROFILE, livepatch=True),
        lambda: module_name_of("x.ko", tmp_path),
    ):
        with pytest.raises(UsageError) as info:
            read()
        assert KINDS[kind] in str(info.value) and "\n" not in str(info.value)


def test_module_named_by_a_scenario(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(KO_SCENARIO)
    special(tmp_path, "fifo", "x.ko")
    with pytest.raises(UsageError, match=r"not a regular file \(a FIFO\)"):
        load_scenario(tmp_path / "s.toml", ModuleFiles())


def test_a_real_module_still_reads(tmp_path: Path) -> None:
    (tmp_path / "x.ko").symlink_to(DATA / "livepatch-sample.ko")  # a link to a file is fine
    assert module_name_of("x.ko", tmp_path) == "livepatch_sample"
    assert check_file(tmp_path / "x.ko", PROFILE, livepatch=True).name == "livepatch_sample"
    with pytest.raises(BadKo, match="no such module file"):
        check_file(tmp_path / "y.ko", PROFILE, livepatch=True)
