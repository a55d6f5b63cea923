"""The model's side of real functions: sympos in a func's identity, symbol resolution
failures, and the refused reversal of a disable of a func stack's bottom patch."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.model.kernel.klp import func_key
from harness.model.predict import predict
from harness.scenario.loader import load_scenario

REALFUNCS = Path(__file__).parents[1] / "scenarios" / "realfuncs"


def test_sympos_identity() -> None:
    assert func_key("vmlinux", "f", 0) == func_key("vmlinux", "f", 1) == ("vmlinux", "f")
    assert func_key("vmlinux", "f", 2) == ("vmlinux", "f,2")


def test_resolution_failure_lines() -> None:
    records = predict(load_scenario(REALFUNCS / "06_unresolved_sympos.toml"))
    assert records[1].errno == 22
    assert records[1].log[1] == (
        "livepatch: symbol position 2 for symbol 'alpha' in object 'klp_target' not found"
    )
    assert records[1].sysfs == {}  # the patch's directory went with its failed init
    assert records[4].errno == 22
    assert records[4].log[1:4] == [
        "livepatch: symbol position 2 for symbol 'alpha' in object 'klp_target' not found",
        "livepatch: failed to initialize patch 'klp_sympos2' for module 'klp_target' (-22)",
        "livepatch: patch 'klp_sympos2' failed for module 'klp_target', "
        "refusing to load module 'klp_target'",
    ]
    assert "klp_target" not in records[4].modules


BOTTOM = """\
description = "Reverse the disable of the bottom of a func stack."
steps = [
  "load t",
  "load p1",
  "park t",
  "load p2 --nowait",
  "force p2",
  "disable p1 --nowait",
  "enable p1",
]

[[target]]
name = "t"
funcs = ["alpha"]
blocker = "alpha"

[[patch]]
name = "p1"

[[patch.object]]
name = "t"
funcs = ["alpha"]

[[patch]]
name = "p2"

[[patch.object]]
name = "t"
funcs = ["alpha"]
"""


def test_reversing_the_bottom_disable_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bottom.toml"
    path.write_text(BOTTOM)
    with pytest.raises(ScenarioError) as info:
        predict(load_scenario(path))
    text = str(info.value)
    assert "steps[6]: `enable p1` reverses the disable of p1" in text
    assert "transition.c:224" in text
    # the same history without the reversal is predicted
    path.write_text(BOTTOM.replace('  "enable p1",\n', ""))
    assert predict(load_scenario(path))[5].pending == "p1"


def test_module_of_the_kernel_loaded_by_the_scenario(tmp_path: Path) -> None:
    path = REALFUNCS / "07_dummy_module.toml"
    scenario = load_scenario(path)
    assert scenario.real_objects() == ["dummy"]
    # nothing to build for dummy
    assert sorted(m.name for m in scenario.modules) == ["klp_dummy", "rf07_spacer"]
    records = predict(scenario)
    assert records[2].ran == {"dummy:dummy_get_stats64": "none"}  # not loaded yet
    assert records[3].log[:2] == [
        "% modprobe dummy",
        "livepatch: applying patch 'klp_dummy' to loading module 'dummy'",
    ]
    assert records[3].modules == {"rf07_spacer": "0", "klp_dummy": "1", "dummy": "0"}
    assert records[4].ran == {"dummy:dummy_get_stats64": "klp_dummy+orig"}
    assert records[5].log[2] == "livepatch: reverting patch 'klp_dummy' on unloading module 'dummy'"
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace('"load dummy",', '"load dummy numdummies=2",', 1))
    with pytest.raises(ScenarioError, match="dummy is a module of the kernel: it takes no param"):
        load_scenario(bad)
