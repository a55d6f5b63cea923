"""Parsing upstream selftest script output (no VM)."""

from harness.upstream.selftests import ScriptResult, ktap, parse_cases

OUTPUT = """TEST: basic function patching ... ok
TEST: multiple livepatches ... ok
TEST: atomic replace livepatch ... not ok

--- expected
+++ result
"""


def test_cases_parsed_in_order() -> None:
    cases = parse_cases("test-livepatch.sh", OUTPUT)
    assert [(c.name, c.passed) for c in cases] == [
        ("basic function patching", True),
        ("multiple livepatches", True),
        ("atomic replace livepatch", False),
    ]


def test_ktap_marks_failed_script() -> None:
    result = ScriptResult("test-livepatch.sh", 1, 3.0, OUTPUT, parse_cases("x", OUTPUT))
    text = ktap([result])
    assert text.startswith("KTAP version 1\n1..1\n")
    assert "    not ok 3 atomic replace livepatch" in text
    assert "not ok 1 selftests: livepatch: test-livepatch.sh" in text
