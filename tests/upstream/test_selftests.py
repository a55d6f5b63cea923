"""Upstream's own livepatch selftests, unmodified, pass in our guests.

One item per (profile, script), so that under pytest-xdist the scripts of one kernel
spread over the workers instead of running as one item of several minutes (debian-7.3:
about 245 s for all eight scripts in a row).  Each item runs its script on a guest of
its own, resumed from the profile's snapshot.

The scripts come from the profile's Makefile (TEST_PROGS) when its sources are already
cached, and from `EXPECTED` below otherwise, so collecting needs no download; a script
of the Makefile that `EXPECTED` lacks is collected and fails, so a new upstream script
is never left out silently.

On guests without the kernel's memory checks (`--fast-guest`): those checks are there
to catch the harness's generated modules corrupting the heap, and these scripts load
only upstream's own test modules; the scripts run a third faster without them
(debian-6.1: 41 s instead of 61 s).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import pytest

from harness.cli import main as cli_main
from harness.kernel.profiles import profile_names
from harness.kernel.sources import cached_sources


class Expected(NamedTuple):
    """What one script must report: at least `cases` cases, one naming each of `names`."""

    cases: int
    names: tuple[str, ...] = ()


# Cases per script: the `start_test` calls of each profile's script (its kernel's
# tools/testing/selftests/livepatch/test-*.sh); every one of them runs on that kernel.
# 6.1 ships 22 cases; 6.12 adds replace sysfs and syscall (25); 7.3 adds module
# function patching, stack_order, kprobe and ftrace tracing (32).
EXPECTED: dict[str, dict[str, Expected]] = {
    "debian-6.1": {
        "test-livepatch.sh": Expected(3),
        "test-callbacks.sh": Expected(11),
        "test-shadow-vars.sh": Expected(1),
        "test-state.sh": Expected(4),
        "test-ftrace.sh": Expected(1),
        "test-sysfs.sh": Expected(2),
    },
    "debian-6.12": {
        "test-livepatch.sh": Expected(3),
        "test-callbacks.sh": Expected(11),
        "test-shadow-vars.sh": Expected(1),
        "test-state.sh": Expected(4),
        "test-ftrace.sh": Expected(1),
        "test-sysfs.sh": Expected(4),
        "test-syscall.sh": Expected(1),
    },
    "debian-7.3": {
        "test-livepatch.sh": Expected(5),
        "test-callbacks.sh": Expected(11),
        "test-shadow-vars.sh": Expected(1),
        "test-state.sh": Expected(4),
        "test-ftrace.sh": Expected(3),
        "test-sysfs.sh": Expected(5, ("stack_order",)),
        "test-syscall.sh": Expected(1),
        "test-kprobe.sh": Expected(2, ("kprobed function",)),
    },
}


def collected_scripts(profile_name: str) -> list[str]:
    """`EXPECTED`'s scripts, then any other of the cached Makefile's TEST_PROGS."""
    scripts = list(EXPECTED.get(profile_name, {}))
    sources = cached_sources(profile_name)
    if sources is not None:
        scripts += [s for s in sources.makefile_list("TEST_PROGS") if s not in scripts]
    return scripts


PARAMS = [
    pytest.param(name, script, id=f"{name}-{script}")
    for name in profile_names()
    for script in collected_scripts(name)
]


def test_expected_totals() -> None:
    """The per-script expectations add up to what each kernel ships, all scripts together."""
    totals = {name: sum(e.cases for e in EXPECTED[name].values()) for name in profile_names()}
    assert all(total >= 22 for total in totals.values()), totals
    assert totals["debian-7.3"] >= 32, totals
    names_73 = [n for e in EXPECTED["debian-7.3"].values() for n in e.names]
    assert "stack_order" in names_73 and "kprobed function" in names_73


@pytest.mark.vm
@pytest.mark.parametrize(("profile_name", "script"), PARAMS)
def test_upstream_selftest_passes(
    profile_name: str, script: str, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = EXPECTED.get(profile_name, {}).get(script)
    assert expected is not None, f"{script} of {profile_name} is not in EXPECTED: add it"
    argv = ["selftests", "--kernel", profile_name, "--script", script, "--ktap", "--fast-guest"]
    rc = cli_main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, err
    cases = [line.strip() for line in out.splitlines() if re.match(r"    (ok|not ok) \d+ ", line)]
    oks = [c for c in cases if c.startswith("ok ")]
    assert len(oks) == len(cases) >= expected.cases, out
    for name in expected.names:
        assert any(name in case for case in cases), out
