"""What a shell script cannot observe is refused, each with its reason."""

from __future__ import annotations

import pytest

from harness.export.exportable import Kind, Refused, check_exportable, refusals
from tests.export.conftest import shipped


@pytest.mark.parametrize(
    ("scenario", "kind", "reason"),
    [
        ("bugs/05", Kind.KSELFTEST, "[[bpf]] programs need a loader"),
        ("bugs/04", Kind.REPRO, "[[processes]] groups are actors"),
        ("bugs/02", Kind.KSELFTEST, "klp relocations are an ELF rewrite"),
        ("bugs/03", Kind.REPRO, "a spinner thread"),
        ("bugs/03", Kind.KSELFTEST, "cpus = 2"),
        ("coexist/05", Kind.KSELFTEST, "`trace`/`untrace` steps"),
        ("coexist/08", Kind.KSELFTEST, "a shadow field"),
        ("conformance/20", Kind.KSELFTEST, "shadow-variable scripts"),
        ("realfuncs/02", Kind.KSELFTEST, "the harness's counting trampoline"),
        ("realfuncs/02", Kind.KSELFTEST, "`trigger` steps"),
        ("realfuncs/07", Kind.KSELFTEST, "dummy: a module of the kernel"),
        ("samples/01", Kind.REPRO, "a module file (`ko`)"),
        ("actors/04", Kind.KSELFTEST, "`wait ... retries=N`"),
    ],
)
def test_what_a_script_cannot_observe_is_refused(scenario: str, kind: Kind, reason: str) -> None:
    reasons = refusals(shipped(scenario), kind)
    assert any(reason in r for r in reasons), reasons


@pytest.mark.parametrize(
    "scenario", ["coexist/03", "coexist/09", "bugs/01", "conformance/01", "conformance/12"]
)
def test_scenarios_a_shell_observes_are_exportable(scenario: str) -> None:
    assert refusals(shipped(scenario), Kind.KSELFTEST) == []


def test_a_reproducer_brings_its_own_bpf_loader() -> None:
    assert refusals(shipped("bugs/05"), Kind.REPRO) == []


@pytest.mark.parametrize("scenario", ["bugs/02", "bugs/07"])
def test_a_reproducer_brings_its_own_klp_relocation_writer(scenario: str) -> None:
    assert refusals(shipped(scenario), Kind.REPRO) == []


def test_a_profile_the_scenario_is_not_for_is_refused() -> None:
    with pytest.raises(Refused, match=r"not meant for debian-7\.3"):
        check_exportable(shipped("bugs/03"), Kind.REPRO, "debian-7.3")


def test_each_reason_once() -> None:
    reasons = refusals(shipped("bugs/05"), Kind.KSELFTEST)
    assert len(reasons) == len(set(reasons)) == 1
