"""Shadow variables: the table outlives modules, pointer numbering is per module init,
and the scripts the kernel would not answer deterministically are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.outcome.record import StepRecord
from tests.model.conftest import predict_text


def run(tmp_path: Path, target_shadow: str, patch_shadow: str, *steps: str) -> list[StepRecord]:
    modules = (
        f'[[target]]\nname = "sv"\nlog_init_exit = false\nshadow = [{target_shadow}]\n'
        f'[[patch]]\nname = "lp"\nshadow = [{patch_shadow}]\n'
        '[[patch.object]]\nname = "vmlinux"\nfuncs = ["cmdline_proc_show"]\n'
    )
    return predict_text(tmp_path, steps, modules)


ALLOC = '{ op = "alloc", obj = 1, id = 5, ctor_data = 1 }'
GET = '{ op = "get", obj = 1, id = 5 }'


def test_a_reloaded_module_gets_fresh_objects_and_numbering(tmp_path: Path) -> None:
    r = run(tmp_path, f"{ALLOC}, {GET}", "", "load sv", "unload sv", "load sv")
    want = [
        "sv: shadow_ctor: PTR2 -> PTR1",
        "sv: klp_shadow_alloc(obj=PTR3, id=0x5, size=8, gfp_flags=GFP_KERNEL), ctor=PTR4, "
        "ctor_data=PTR1 = PTR2",
        "sv: klp_shadow_get(obj=PTR3, id=0x5) = PTR2",
        "sv:   got expected PTR2 -> PTR1 result",
    ]
    assert r[0].log[1:] == want
    assert r[2].log[1:] == want  # new addresses: no clash with the stale variable


def test_free_all_reaches_other_modules_variables(tmp_path: Path) -> None:
    r = run(tmp_path, ALLOC, '{ op = "free_all", id = 5, dtor = true }', "load sv", "load lp")
    assert r[1].log[1:3] == [
        "lp: shadow_dtor(obj=PTR1, shadow_data=PTR2)",
        "lp: klp_shadow_free_all(id=0x5, dtor=PTR3)",
    ]


def test_get_or_alloc_returns_the_existing_variable(tmp_path: Path) -> None:
    shadow = (
        '{ op = "get_or_alloc", obj = 2, id = 7, ctor_data = 3 },'
        '{ op = "get_or_alloc", obj = 2, id = 7, ctor_data = 4 },'
        '{ op = "free", obj = 2, id = 7 }, { op = "get", obj = 2, id = 7 }'
    )
    r = run(tmp_path, shadow, "", "load sv")
    assert r[0].log[1:] == [
        "sv: shadow_ctor: PTR2 -> PTR1",
        "sv: klp_shadow_get_or_alloc(obj=PTR3, id=0x7, size=8, gfp_flags=GFP_KERNEL), "
        "ctor=PTR4, ctor_data=PTR1 = PTR2",
        "sv: klp_shadow_get_or_alloc(obj=PTR3, id=0x7, size=8, gfp_flags=GFP_KERNEL), "
        "ctor=PTR4, ctor_data=PTR5 = PTR2",
        "sv:   got expected PTR2 -> PTR1 result",
        "sv: klp_shadow_free(obj=PTR3, id=0x7, dtor=PTR0)",
        "sv: klp_shadow_get(obj=PTR3, id=0x7) = PTR0",
        "sv:   got expected NULL result",
    ]


def test_duplicate_alloc_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"target\[0\]\.shadow\[1\]: .*WARN"):
        run(tmp_path, f"{ALLOC}, {ALLOC}", "", "load sv")


def test_free_all_with_a_destructor_over_several_variables_is_refused(tmp_path: Path) -> None:
    shadow = f'{ALLOC}, {{ op = "alloc", obj = 2, id = 5, ctor_data = 1 }}'
    with pytest.raises(ScenarioError, match=r"patch\[0\]\.shadow\[0\]: .*not deterministic"):
        run(tmp_path, shadow, '{ op = "free_all", id = 5, dtor = true }', "load sv", "load lp")
