"""A body whose prototype differs from its original's: `klp-harness run` builds the
livepatch module, compares, and refuses with one line and exit 2 before any guest.

Needs the default profile's headers (`make setup`); deselect with `-m 'not kbuild'`.
vmlinux's BTF is the synthesized one of test_signatures (a recorded one needs a guest
boot on a fresh cache); a generated target's prototype is its built module's DWARF."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.guest import vm
from harness.kernel.profiles import DEFAULT_PROFILE
from harness.modules import signatures
from harness.symbols import btf, validate
from tests.modules.test_signatures import vmlinux_btf
from tests.symbols.test_symbols import VMLINUX

pytestmark = pytest.mark.kbuild

VMLINUX_BODY = '''\
description = "A body that forgot a parameter."
steps = ["load klp_sig_vmlinux", "disable klp_sig_vmlinux", "unload klp_sig_vmlinux"]

[[patch]]
name = "klp_sig_vmlinux"

[[patch.object]]
name = "vmlinux"
funcs = [
  { name = "version_proc_show", headers = ["linux/seq_file.h"], body = """
static int version_proc_show(struct seq_file *m)
{
	seq_puts(m, "fixed\\\\n");
	return 0;
}
""" },
]
'''

TARGET_BODY = '''\
description = "A body that takes an int where the target's function takes a pointer."
steps = ["load klp_sig_target", "load klp_sig_patch", "disable klp_sig_patch",
         "unload klp_sig_patch", "unload klp_sig_target"]

[[target]]
name = "klp_sig_target"
funcs = ["alpha"]

[[patch]]
name = "klp_sig_patch"

[[patch.object]]
name = "klp_sig_target"
funcs = [
  { name = "alpha", body = """
static const char *alpha(int park)
{
	return park ? "parked" : "alpha: body";
}
""" },
]
'''


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (VMLINUX_BODY, "patch[0].object[0].funcs[0].body",
         f"version_proc_show takes (struct seq_file *, void *) in {DEFAULT_PROFILE}'s "
         "vmlinux, the body takes (struct seq_file *)"),
        (TARGET_BODY, "patch[0].object[0].funcs[0].body",
         f"alpha takes (const bool *) in {DEFAULT_PROFILE}'s klp_sig_target, "
         "the body takes (int)"),
    ],
)  # fmt: skip
def test_run_refuses_a_wrong_body_before_any_guest(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str,
    where: str,
    message: str,
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a guest was started for a body that does not match")

    monkeypatch.setattr(vm.Guest, "__enter__", refuse)
    monkeypatch.setattr(validate, "vmlinux_record", lambda _profile: VMLINUX)
    monkeypatch.setattr(signatures, "vmlinux_types", lambda _profile: btf.parse(vmlinux_btf()))
    path = tmp_path / "wrong_body.toml"
    path.write_text(text)
    args = ["run", str(path), "--kernel", DEFAULT_PROFILE, "--results", str(tmp_path / "r")]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"{path}: {where}: {message}\n"), err
    assert err.count("klp-harness: error:") == 1, err
