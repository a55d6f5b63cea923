"""Exported modules are named for upstream's check_result filter, uniquely."""

from __future__ import annotations

from harness.export.names import Namer, renamed, upstream_name
from harness.scenario.step_types import Call, Load
from tests.export.conftest import shipped


def test_upstream_names_carry_test_klp() -> None:
    assert upstream_name("klp_target") == "test_klp_target"
    assert upstream_name("c01_p1") == "test_klp_c01_p1"
    assert upstream_name("test_klp_livepatch") == "test_klp_livepatch"


def test_renaming_reaches_objects_and_steps() -> None:
    scenario = shipped("conformance/01")
    mapping = Namer().names(scenario, "1")
    new = renamed(scenario, mapping)
    assert [m.name for m in new.modules] == [mapping[m.name] for m in scenario.modules]
    assert {o.name for p in new.patches for o in p.objects} == {"test_klp_c01_target"}
    assert new.steps[0] == Load("test_klp_c01_target")
    assert Call("test_klp_c01_target", "func1") in new.steps


def test_upstream_modules_and_different_modules_of_one_name_get_a_tag() -> None:
    namer = Namer()
    first = namer.names(shipped("coexist/01"), "1")  # test_klp_kprobe, test_klp_livepatch
    assert first == {
        "test_klp_kprobe": "test_klp_kprobe_1",
        "test_klp_livepatch": "test_klp_livepatch_1",
    }
    again = namer.names(shipped("coexist/02"), "2")  # another test_klp_kprobe
    assert again["test_klp_kprobe"] == "test_klp_kprobe_2"
    assert again["test_klp_livepatch"] == "test_klp_livepatch_1"  # the same module: shared


def test_the_same_module_in_two_scenarios_is_one() -> None:
    namer = Namer()
    three = namer.names(shipped("coexist/03"), "1")
    nine = namer.names(shipped("coexist/09"), "2")
    assert three["klp_lp"] == nine["klp_lp"] == "test_klp_lp"
