"""Generated modules in a real guest: the all-features set loads, registers in sysfs,
patched functions report the patch, a failing pre_patch refuses the load, and
everything unloads again.  (Scenario items check behaviour against the model; this
checks the generated modules themselves.)"""

from __future__ import annotations

from typing import Any

import pytest

from harness.kernel.profiles import load_profile, profile_names
from harness.modules.build import build_modules
from harness.runner.session import install_modules
from harness.runner.waits import refcnt_zero_script
from tests.modules.test_build import MODULES

pytestmark = pytest.mark.vm

LP = "/sys/kernel/livepatch/klp_kb_patch"
POLL = "for i in $(seq 100); do {cond} && exit 0; sleep 0.1; done; exit 1"


@pytest.mark.parametrize("profile_name", profile_names())
def test_all_features_load_patch_and_unload(klp_guests: Any, profile_name: str) -> None:
    manager = klp_guests(profile_name)
    guest = manager.clean_guest()
    manager.mark_dirty()
    install_modules(guest, build_modules(MODULES, load_profile(profile_name)).modules)
    assert guest.run("depmod -a").exit_code == 0  # the runner loads by file; kmod by index

    assert guest.run("modprobe klp_kb_target").exit_code == 0
    assert guest.run("cat /sys/kernel/debug/klp_harness/klp_kb_target/alpha").stdout == (
        "alpha: orig\n"
    )
    failing = guest.run("modprobe klp_kb_failing")
    assert failing.exit_code != 0 and "No such device" in failing.stderr

    assert guest.run("modprobe klp_kb_patch").exit_code == 0
    assert guest.run(POLL.format(cond=f'[ "$(cat {LP}/transition)" = 0 ]')).exit_code == 0
    assert guest.run(f"cat {LP}/enabled {LP}/klp_kb_target/patched").stdout.split() == [
        "1",
        "1",
    ]
    patched = "klp_kb_patch: this has been live patched"
    for source in (
        "/sys/kernel/debug/klp_harness/klp_kb_target/alpha",
        "/sys/kernel/debug/klp_harness/klp_kb_target/beta",
        "/proc/cmdline",
        "/proc/meminfo",
    ):
        assert guest.run(f"cat {source}").stdout.strip() == patched, source
    assert guest.run("cat /sys/kernel/debug/klp_harness/klp_kb_target/gamma").stdout == (
        "gamma: orig\n"
    )

    assert guest.run(f"echo 0 > {LP}/enabled").exit_code == 0
    assert guest.run(POLL.format(cond=f"[ ! -e {LP} ]")).exit_code == 0
    assert guest.run(refcnt_zero_script("klp_kb_patch"), timeout=70).exit_code == 0
    assert guest.run("rmmod klp_kb_patch && rmmod klp_kb_target").exit_code == 0
    assert "klp_kb" not in guest.run("cat /proc/modules").stdout
    assert guest.run("cat /proc/cmdline").stdout.strip() != patched
