"""Step scripts and their reports, without a VM (the VM tests run them)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.runner.actions import action_errno, action_script, parse_report
from harness.scenario.step_types import Call, Load, Spawn, Unload, Wait
from harness.scenario.types import Processes, Scenario


def _scenario() -> Scenario:
    return Scenario(path=Path("s.toml"), description="", steps=())


def test_load_runs_klp_load_on_the_modules_file_after_upstreams_marker() -> None:
    script = action_script(_scenario(), Load("p_one", (("x", "1"),)))
    marker, load = script.index("'% modprobe p_one x=1'"), script.index("klp-load p_one ")
    assert marker < load
    assert "/lib/modules/$__release/extra/p_one.ko x=1" in script
    assert "modprobe p_one" not in script.replace("'% modprobe p_one", "")


@pytest.mark.parametrize(
    ("report", "step", "want"),
    [
        ("0\n", Load("m"), 0),
        ("1\nmodprobe: ERROR: could not insert 'm': No such device", Load("m"), errno.ENODEV),
        (
            "1\nmodprobe: ERROR: could not insert 'm': Unknown symbol in module, or unknown "
            "parameter (see dmesg)",
            Load("m"),
            errno.ENOENT,
        ),
        (
            "1\nrmmod: can't unload module 'm': Resource temporarily unavailable",
            Unload("m"),
            errno.EAGAIN,
        ),
        ("1\nbash: line 1: echo: write error: Device or resource busy", Unload("m"), errno.EBUSY),
        ("1\n", Call("vmlinux", "cmdline_proc_show"), errno.ENOENT),
        ("0\n", Wait("p"), 0),
    ],
)
def test_report_gives_the_operations_errno(report: str, step: object, want: int) -> None:
    assert action_errno(step, *parse_report(report)) == want  # type: ignore[arg-type]


def test_an_unreadable_report_is_a_harness_error() -> None:
    with pytest.raises(HarnessError, match="unreadable"):
        parse_report("")


def test_spawn_leaves_a_running_group_as_it_is() -> None:
    """The group's pids file says it runs: starting more would leave the first ones
    running beyond `kill`."""
    scenario = Scenario(
        path=Path("t.toml"), description="t", steps=(), processes=(Processes("loop", 3),)
    )
    script = action_script(scenario, Spawn("loop"))
    assert script.startswith("if [ -e /run/klp-procs-loop ]; then __rc=0; else ")
    assert script.count("klp-getpid ") == 1 and script.endswith("; fi")
