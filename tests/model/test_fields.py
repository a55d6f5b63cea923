"""Shadow fields a patch attaches to a target's structures: the loader's checks, the
model's take-over through an atomic replace, a stacked patch finding its field gone,
and the refusal of a field left on an unloaded target."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.model.predict import predict
from harness.modules.render import render_sources
from harness.scenario.loader import load_scenario

COEXIST = Path(__file__).parents[1] / "scenarios" / "coexist"

STACKED = """\
description = "Two stacked patches add the same field."
steps = [STEPS]
[[target]]
name = "t"
funcs = ["alpha"]
[[patch]]
name = "p1"
[[patch.object]]
name = "t"
funcs = ["alpha"]
shadow_field = 0x10
[[patch]]
name = "p2"
REPLACE
[[patch.object]]
name = "t"
funcs = ["alpha"]
FIELD
"""


def _scenario(tmp_path: Path, steps: str, replace: bool = False, field: bool = True) -> Path:
    path = tmp_path / "s.toml"
    text = STACKED.replace("STEPS", steps).replace("REPLACE", "replace = true" * replace)
    path.write_text(text.replace("FIELD", "shadow_field = 0x10" * field))
    return path


def test_replace_takes_the_field_over() -> None:
    records = predict(load_scenario(COEXIST / "08_shadow_field_cumulative.toml"))
    taken = "klp_fix2: klp_target:alpha: shadow field 0x10 taken over from klp_fix1"
    assert taken in records[2].log
    freed = "klp_fix2: klp_target:alpha: shadow field 0x10 freed (attached by klp_fix1)"
    assert freed in records[4].log


def test_a_stacked_patch_finds_its_field_freed_by_the_older_one(tmp_path: Path) -> None:
    steps = '"load t", "load p1", "load p2", "disable p1", "disable p2"'
    records = predict(load_scenario(_scenario(tmp_path, steps)))
    assert "p2: t:alpha: shadow field 0x10 taken over from p1" in records[2].log
    assert "p1: t:alpha: shadow field 0x10 freed (attached by p1)" in records[3].log
    assert "p2: t:alpha: shadow field 0x10 missing" in records[4].log


def test_a_field_left_on_an_unloaded_target_is_refused(tmp_path: Path) -> None:
    """p2 replaces p1 without the field: nothing frees it; after the target is unloaded
    a reloaded one may get the same address, so the next attach is unpredictable."""
    steps = '"load t", "load p1", "load p2", "disable p2", "unload p2", "unload p1", '
    steps += '"unload t", "load p1", "load t"'
    scenario = load_scenario(_scenario(tmp_path, steps, replace=True, field=False))
    with pytest.raises(ScenarioError, match="reloaded target may reuse its address"):
        predict(scenario)


CHECKED = """\
description = "A field where none can go."
steps = ["load p"]
[[target]]
name = "t"
funcs = ["alpha"]
[[patch]]
name = "p"
[[patch.object]]
name = "OBJ"
funcs = ["FUNC"]
shadow_field = VALUE
"""


@pytest.mark.parametrize(
    ("obj", "func", "value", "message"),
    [
        ("t", "alpha", "0", "shadow id 0 out of range"),
        ("vmlinux", "cmdline_proc_show", "0x10", "goes on a target's objects"),
    ],
)
def test_field_checks(tmp_path: Path, obj: str, func: str, value: str, message: str) -> None:
    path = tmp_path / "s.toml"
    text = CHECKED.replace("OBJ", obj).replace("FUNC", func).replace("VALUE", value)
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


def test_template_wires_the_field_callbacks() -> None:
    c = render_sources(load_scenario(COEXIST / "08_shadow_field_cumulative.toml"))["klp_fix2"]
    assert ".post_patch = klp_harness_field_post_patch_0," in c
    assert 'klp_harness_field_attach(obj, 0x10, "beta");' in c
    assert 'klp_harness_field_free(obj, 0x10, "alpha");' in c
