"""Exported modules are plain C: none of the harness's instrumentation."""

from __future__ import annotations

import pytest

from harness.export.modules import render_sources
from tests.export.conftest import shipped


@pytest.mark.parametrize("name", ["conformance/12", "coexist/03", "conformance/19", "bugs/01"])
def test_no_instrumentation(name: str) -> None:
    for text in render_sources(shipped(name), "x.toml").values():
        assert "klp_harness" not in text and "debugfs" not in text
        assert "atomic_long_inc" not in text


def test_a_target_reads_its_functions_through_proc() -> None:
    text = render_sources(shipped("conformance/12"), "x.toml")["c12_target"]
    assert 'proc_create_single_data("busy_func", 0444' in text
    assert 'return "func1: orig";' in text
    assert "module_param_cb(block_transition, &block_ops, &block, 0644);" in text


def test_a_patch_logs_upstreams_lines() -> None:
    text = render_sources(shipped("conformance/17"), "x.toml")["c17_p1"]
    assert "callback_info(__func__, obj);" in text
    assert '.old_name = "func1",' in text
    assert 'MODULE_INFO(livepatch, "Y");' in text
