"""Trigger observation in a real guest: the original's entry probe is an int3 (or
optimized) kprobe inside its body, never an ftrace one, and it counts only calls that
livepatch did not redirect; a replacement's counter counts the others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.kernel.profiles import load_profile, profile_names
from harness.modules.build import build_modules
from harness.runner.session import install_modules
from harness.runner.trigger import parse_ran, setup_script, trigger_script, watched
from harness.scenario.loader import load_scenario
from harness.scenario.step_types import Trigger

pytestmark = pytest.mark.vm

SCENARIO = Path(__file__).parents[1] / "scenarios" / "realfuncs" / "09_two_funcs.toml"
LP = "/sys/kernel/livepatch/klp_two"
POLL = "for i in $(seq 100); do {cond} && exit 0; sleep 0.1; done; exit 1"


@pytest.mark.parametrize("profile_name", profile_names())
def test_probes_and_counters(klp_guests: Any, profile_name: str) -> None:
    scenario = load_scenario(SCENARIO)
    funcs = watched(scenario)
    step = scenario.steps[0]
    assert isinstance(step, Trigger)
    manager = klp_guests(profile_name)
    guest = manager.clean_guest()
    manager.mark_dirty()
    install_modules(guest, build_modules(scenario, load_profile(profile_name)).modules)

    assert guest.run(setup_script(funcs)).exit_code == 0
    probes = guest.run("cat /sys/kernel/debug/kprobes/list").stdout
    assert probes.count("version_proc_show+") == 1 and probes.count("do_sys_openat2+") == 1
    assert "[FTRACE]" not in probes  # not on the ftrace call site: no ftrace ops shared

    def ran() -> dict[str, str]:
        out = guest.run(trigger_script(step, funcs)).stdout
        return parse_ran(out.partition("@@trigger\n")[2], step, funcs)

    assert ran() == {"vmlinux:version_proc_show": "orig*1", "vmlinux:do_sys_openat2": "orig"}
    assert guest.run("klp-load klp_two /lib/modules/$(uname -r)/extra/klp_two.ko").exit_code == 0
    assert guest.run(POLL.format(cond=f'[ "$(cat {LP}/transition)" = 0 ]')).exit_code == 0
    assert ran() == {
        "vmlinux:version_proc_show": "klp_two*1",
        "vmlinux:do_sys_openat2": "klp_two+orig",
    }
    assert guest.run("cat /proc/version").stdout == "klp_two\n"
    assert guest.run(f"echo 0 > {LP}/enabled").exit_code == 0
    assert guest.run(POLL.format(cond=f"[ ! -e {LP} ]")).exit_code == 0
    assert ran() == {"vmlinux:version_proc_show": "orig*1", "vmlinux:do_sys_openat2": "orig"}
