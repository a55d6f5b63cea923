"""A body's prototype against its original's, before any guest: BTF parsed from a
synthesized blob (the layout of include/uapi/linux/btf.h), the body's DWARF from an
object file gcc compiles here (a .ko is the same kind of ELF: ET_REL with -g)."""

from __future__ import annotations

import base64
import gzip
import struct
import subprocess
from pathlib import Path

import pytest

from harness.errors import HarnessError, ScenarioError
from harness.guest.result import CommandResult
from harness.kernel.profiles import KernelProfile
from harness.modules import dwarf, signatures
from harness.scenario.loader import load_scenario
from harness.symbols import btf, record
from harness.symbols.shapes import Prototype, difference


class BtfWriter:
    """Types and strings of a BTF blob, ids from 1 (or after a base's)."""

    def __init__(self, first_id: int = 1, first_string: int = 0) -> None:
        self.types = b""
        self.strings = b"\0" if first_string == 0 else b""
        self.first_string = first_string
        self.next_id = first_id

    def name(self, text: str) -> int:
        if not text:
            return 0
        offset = self.first_string + len(self.strings)
        self.strings += text.encode() + b"\0"
        return offset

    def add(
        self, kind: int, name: str, size_or_type: int, vlen: int = 0, extra: bytes = b""
    ) -> int:
        info = (kind << 24) | vlen
        self.types += struct.pack("<III", self.name(name), info, size_or_type) + extra
        self.next_id += 1
        return self.next_id - 1

    def int_(self, name: str, size: int) -> int:
        return self.add(btf.INT, name, size, extra=struct.pack("<I", 8 * size))

    def struct_(self, name: str, size: int) -> int:
        return self.add(btf.STRUCT, name, size)  # no members: enough for a shape

    def func(self, name: str, returns: int, params: list[int]) -> int:
        extra = b"".join(struct.pack("<II", self.name(f"p{i}"), t) for i, t in enumerate(params))
        proto = self.add(btf.FUNC_PROTO, "", returns, len(params), extra)
        return self.add(btf.FUNC, name, proto, 1)

    def blob(self) -> bytes:
        header = struct.pack("<HBBIIIII", btf.MAGIC, 1, 0, 24, 0, len(self.types),
                             len(self.types), len(self.strings))  # fmt: skip
        return header + self.types + self.strings


def vmlinux_btf() -> bytes:
    w = BtfWriter()
    int_, long_ = w.int_("int", 4), w.int_("long int", 8)
    seq_file = w.struct_("seq_file", 128)
    seq_ptr = w.add(btf.PTR, "", seq_file)
    void_ptr = w.add(btf.PTR, "", 0)
    size_t = w.add(btf.TYPEDEF, "size_t", w.int_("long unsigned int", 8))
    const_size = w.add(btf.CONST, "", size_t)
    w.func("version_proc_show", int_, [seq_ptr, void_ptr])
    w.func("take_size", long_, [const_size])
    w.func("do_nothing", 0, [])
    w.func("vararg", int_, [seq_ptr, 0])
    w.func("by_value", int_, [seq_file])
    return w.blob()


BODIES = """\
struct seq_file { char buf[128]; };
typedef unsigned long sz;
int version_proc_show(struct seq_file *m, void *v) { return 0; }
int one_param(struct seq_file *m) { return 0; }
int three_params(struct seq_file *m, void *v, int x) { return x; }
int int_not_long(struct seq_file *m, int v) { return v; }
long returns_long(struct seq_file *m, void *v) { return 0; }
long take_size(sz s) { return (long)s; }
void do_nothing(void) { }
int vararg(struct seq_file *m, ...) { return 0; }
int by_value(struct seq_file s) { return s.buf[0]; }
int by_pointer(struct seq_file *s) { return 0; }
"""


@pytest.fixture(scope="module")
def bodies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Prototype]:
    directory = tmp_path_factory.mktemp("dwarf")
    (directory / "b.c").write_text(BODIES)
    subprocess.run(["gcc", "-g", "-O2", "-c", "-o", str(directory / "b.o"), "b.c"],
                   cwd=directory, check=True)  # fmt: skip
    names = {line.split("(")[0].split()[-1] for line in BODIES.splitlines() if "(" in line}
    return dwarf.prototypes(directory / "b.o", names)


@pytest.fixture(scope="module")
def types() -> btf.Types:
    return btf.parse(vmlinux_btf())


def original(types: btf.Types, func: str) -> Prototype:
    (found,) = btf.prototypes(types, func)
    return found


@pytest.mark.parametrize(
    ("func", "body", "expected"),
    [
        ("version_proc_show", "one_param",
         ("takes (struct seq_file *, void *)", "takes (struct seq_file *)")),
        ("version_proc_show", "three_params",
         ("takes (struct seq_file *, void *)", "takes (struct seq_file *, void *, int)")),
        ("version_proc_show", "int_not_long",
         ("takes (struct seq_file *, void *)", "takes (struct seq_file *, int)")),
        ("version_proc_show", "returns_long", ("returns int", "returns long int")),
        ("do_nothing", "version_proc_show",
         ("takes (void)", "takes (struct seq_file *, void *)")),
        ("by_value", "by_pointer", ("takes (struct seq_file)", "takes (struct seq_file *)")),
        ("vararg", "one_param", ("takes (struct seq_file *, ...)", "takes (struct seq_file *)")),
    ],
)  # fmt: skip
def test_each_kind_of_mismatch_is_named(
    types: btf.Types, bodies: dict[str, Prototype], func: str, body: str, expected: tuple[str, str]
) -> None:
    assert difference(original(types, func), bodies[body]) == expected


@pytest.mark.parametrize(
    "func", ["version_proc_show", "take_size", "do_nothing", "vararg", "by_value"]
)
def test_matching_bodies_pass_whatever_their_spelling(
    types: btf.Types, bodies: dict[str, Prototype], func: str
) -> None:
    # take_size: `const size_t` in BTF, the body's own typedef of unsigned long
    assert difference(original(types, func), bodies[func]) is None


def test_split_btf_continues_the_base(types: btf.Types) -> None:
    w = BtfWriter(first_id=len(types.kinds), first_string=len(types.strings))
    w.func("module_func", 2, [2, 2])  # id 2: `long int` in the base
    found = btf.prototypes(btf.parse(w.blob(), types), "module_func")
    assert [(str(p.returns), p.takes()) for p in found] == [("long int", "(long int, long int)")]


def test_bad_btf_is_one_line() -> None:
    with pytest.raises(btf.BadBtf, match="bad magic"):
        btf.parse(b"\0" * 32)


def fake_profile(tmp_path: Path) -> KernelProfile:
    return KernelProfile(
        "debian-6.1", "6.1.0-x", "6.1.1", "", tmp_path, tmp_path, tmp_path / "m", tmp_path, True
    )


SCENARIO = '''\
description = "A body that forgot a parameter."
steps = ["load lp"]

[[patch]]
name = "lp"

[[patch.object]]
name = "vmlinux"
funcs = [
  "__do_sys_getpid",
  { name = "version_proc_show", headers = ["linux/seq_file.h"], body = """
static int version_proc_show(struct seq_file *m)
{
	return 0;
}
""" },
]
'''


def test_check_bodies_names_the_field(
    tmp_path: Path, types: btf.Types, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "s.toml").write_text(SCENARIO)
    scenario = load_scenario(tmp_path / "s.toml")
    # the built module: the body renamed as the template renames it
    (tmp_path / "lp.c").write_text(
        "struct seq_file;\n"
        "int klp_harness_new_0_version_proc_show(struct seq_file *m) { return 0; }\n"
    )
    subprocess.run(["gcc", "-g", "-c", "-o", "lp.ko", "lp.c"], cwd=tmp_path, check=True)
    monkeypatch.setattr(signatures, "vmlinux_types", lambda _profile: types)
    profile = fake_profile(tmp_path)
    with pytest.raises(ScenarioError) as caught:
        signatures.check_bodies(scenario, profile, {"lp": tmp_path / "lp.ko"})
    assert str(caught.value) == (
        f"{scenario.path}: patch[0].object[0].funcs[1].body: version_proc_show takes "
        "(struct seq_file *, void *) in debian-6.1's vmlinux, the body takes (struct seq_file *)"
    )


def test_unknown_original_is_not_refused(
    tmp_path: Path, types: btf.Types, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "s.toml").write_text(SCENARIO.replace("version_proc_show", "not_in_btf"))
    scenario = load_scenario(tmp_path / "s.toml")
    (tmp_path / "lp.c").write_text("int klp_harness_new_0_not_in_btf(void *m) { return 0; }\n")
    subprocess.run(["gcc", "-g", "-c", "-o", "lp.ko", "lp.c"], cwd=tmp_path, check=True)
    monkeypatch.setattr(signatures, "vmlinux_types", lambda _profile: types)
    profile = fake_profile(tmp_path)
    signatures.check_bodies(scenario, profile, {"lp": tmp_path / "lp.ko"})  # BTF has none
    assert btf.prototypes(types, "not_in_btf") == []


def test_btf_record_round_trip(tmp_path: Path) -> None:
    blob = vmlinux_btf()

    class FakeGuest:
        def run(self, cmd: str, timeout: float = 30.0, check: bool = False) -> CommandResult:
            assert cmd == record.BTF_COMMAND
            return CommandResult(0, base64.b64encode(gzip.compress(blob)).decode() + "\n", "")

    record.record_btf(FakeGuest(), tmp_path)
    assert gzip.decompress((tmp_path / record.BTF).read_bytes()) == blob


def test_btf_record_refuses_garbage(tmp_path: Path) -> None:
    class FakeGuest:
        def run(self, cmd: str, timeout: float = 30.0, check: bool = False) -> CommandResult:
            return CommandResult(0, "not base64 at all!\n", "")

    with pytest.raises(HarnessError, match="recording symbols"):
        record.record_btf(FakeGuest(), tmp_path)
    assert not (tmp_path / record.BTF).exists()


def test_kernel_without_btf_is_recorded_empty(tmp_path: Path) -> None:
    class FakeGuest:
        def run(self, cmd: str, timeout: float = 30.0, check: bool = False) -> CommandResult:
            return CommandResult(0, f"{record.NO_BTF}\n", "")

    record.record_btf(FakeGuest(), tmp_path)
    assert gzip.decompress((tmp_path / record.BTF).read_bytes()) == b""
    assert btf.prototypes(btf.Types(), "version_proc_show") == []  # nothing to compare
