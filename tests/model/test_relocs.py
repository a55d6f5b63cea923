"""klp relocations in the model: written at a module object's coming, cleared by the
going hook from v6.3 (not on 6.1: the reload bug of bugs/02), left written by a
patch whose own coming failed after writing them (every profile), and the loader's
checks of `klp_relocs`."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.model.predict import predict
from harness.scenario.loader import load_scenario

BUGS = Path(__file__).parents[1] / "scenarios" / "bugs"
RELOAD = BUGS / "02_reload_patched_module_klp_relocs.toml"
REFUSED = [
    "livepatch: failed to initialize patch 'klp_rl_patch' for module 'klp_rl_target' (-8)",
    "livepatch: patch 'klp_rl_patch' failed for module 'klp_rl_target', "
    "refusing to load module 'klp_rl_target'",
    "modprobe: ERROR: could not insert 'klp_rl_target': Exec format error",
]

PRE_PATCH_FAILS = """\
description = "A patch with klp relocations whose pre_patch fails at the target's coming."
steps = ["load p", "set p pre_patch_ret -19", "load t", "set p pre_patch_ret 0", "load t"]
[[target]]
name = "t"
funcs = ["alpha"]
[[patch]]
name = "p"
[[patch.object]]
name = "t"
funcs = ["alpha"]
callbacks = ["pre_patch"]
KEY
"""


def test_reload_is_refused_on_61() -> None:
    records = predict(load_scenario(RELOAD), "6.1")
    reload = records[4]
    assert reload.errno == errno.ENOEXEC
    assert reload.log == [
        "% modprobe klp_rl_target",
        "module: x86/modules: Skipping invalid relocation target, existing value is "
        "nonzero for type 1, loc PTR1, val PTR2",
        *REFUSED,
    ]
    assert "klp_rl_target" not in reload.modules
    # with the patch gone, nothing is left to write: the module loads
    assert records[7].errno == 0 and records[7].modules["klp_rl_target"] == "0"


@pytest.mark.parametrize("series", ["6.12", "7.3"])
def test_reload_is_patched_again_where_the_going_hook_clears(series: str) -> None:
    records = predict(load_scenario(RELOAD), series)
    reload = records[4]
    assert reload.errno == 0
    assert "livepatch: applying patch 'klp_rl_patch' to loading module 'klp_rl_target'" in (
        reload.log
    )
    assert reload.impls["klp_rl_target:alpha"] == "klp_rl_patch"


def _failed_coming(tmp_path: Path) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(PRE_PATCH_FAILS.replace("KEY", "klp_relocs = true"))
    return path


def test_a_failed_coming_leaves_its_own_relocations_written_on_612(tmp_path: Path) -> None:
    records = predict(load_scenario(_failed_coming(tmp_path)), "6.12")
    assert records[2].errno == errno.ENODEV
    assert records[4].errno == errno.ENOEXEC
    assert records[4].log[1] == (
        "module: x86/modules: Invalid relocation target, existing value is nonzero for "
        "type 1, loc PTR1, val PTR2"
    )


def test_without_relocations_the_same_history_loads(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(PRE_PATCH_FAILS.replace("KEY", ""))
    assert predict(load_scenario(path), "6.12")[4].errno == 0


def test_73_line_names_the_first_entry_of_a_section_the_build_numbers(tmp_path: Path) -> None:
    records = predict(load_scenario(_failed_coming(tmp_path)), "7.3")
    assert records[4].errno == errno.ENOEXEC
    assert records[4].log[1] == (
        "module: x86/modules: Invalid relocation target, existing value is nonzero for "
        "sec SEC, idx 0, type 1, loc PTR1, val PTR2"
    )


@pytest.mark.parametrize(
    ("obj", "key", "message"),
    [
        ("vmlinux", "true", "generated target"),
        ("t", '"yes"', "expected true or false"),
    ],
)
def test_loader_refuses(tmp_path: Path, obj: str, key: str, message: str) -> None:
    text = PRE_PATCH_FAILS.replace("KEY", f"klp_relocs = {key}")
    if obj == "vmlinux":
        text = text.replace(
            'name = "t"\nfuncs = ["alpha"]\ncallbacks',
            'name = "vmlinux"\nfuncs = ["cmdline_proc_show"]\ncallbacks',
        )
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


LATE_TARGET = """\
description = "The patch first: the target's coming writes the relocation."
steps = ["load p", "load t", "unload t", "load t"]
[[target]]
name = "t"
funcs = ["alpha"]
[[patch]]
name = "p"
[[patch.object]]
name = "t"
funcs = ["alpha"]
klp_relocs = true
"""


@pytest.mark.parametrize(("series", "second"), [("6.1", errno.ENOEXEC), ("6.12", 0), ("7.3", 0)])
def test_a_relocation_written_at_coming_too(tmp_path: Path, series: str, second: int) -> None:
    path = tmp_path / "s.toml"
    path.write_text(LATE_TARGET)
    records = predict(load_scenario(path), series)
    assert records[1].errno == 0 and records[1].impls["t:alpha"] == "p"
    assert records[3].errno == second
