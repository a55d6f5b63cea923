"""`cpus = 2` and a spinner bound to CPU 1: validated before any guest, predicted per
series (the cond_resched() switching of v6.4, harness/model/kernel/tasks.py), and a guest
of one CPU count never serves a scenario that wants the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.errors import ScenarioError
from harness.kernel.profiles import KernelProfile
from harness.model.predict import predict
from harness.runner.guests import GuestSource, ReadyGuest
from harness.scenario.loader import load_scenario

BUG = (
    Path(__file__).parents[1] / "scenarios" / "bugs" / "03_cpu_bound_kthread_blocks_transition.toml"
)

BODY = """
description = "d"
steps = ["load klp_target", "start klp_target"]
[[target]]
name = "klp_target"
funcs = ["alpha"]
"""


def scenario_text(tmp_path: Path, top: str, spinner: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(top + BODY + f'spinner = {{ func = "alpha"{spinner} }}\n')
    return path


def test_cpus_defaults_to_one_and_takes_two(tmp_path: Path) -> None:
    assert load_scenario(scenario_text(tmp_path, "", "")).cpus == 1
    scenario = load_scenario(scenario_text(tmp_path, "cpus = 2\n", ", cpu = 1"))
    assert scenario.cpus == 2
    assert scenario.targets[0].spinner is not None and scenario.targets[0].spinner.cpu == 1


@pytest.mark.parametrize(
    ("top", "spinner", "message"),
    [
        ("cpus = 3\n", "", "cpus: a CPU count 3 out of range (1..2)"),
        ("cpus = 0\n", "", "cpus: a CPU count 0 out of range (1..2)"),
        ('cpus = "2"\n', "", "cpus: a CPU count must be an integer, got '2'"),
        ("cpus = true\n", "", "cpus: a CPU count must be an integer, got True"),
        ("", ", cpu = 1", "CPU 1 needs cpus = 2 (the guest has 1)"),
        ("cpus = 2\n", ", cpu = 0", "a CPU number 0 out of range (1..1)"),
    ],
)
def test_bad_cpus_is_one_clear_line(tmp_path: Path, top: str, spinner: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(scenario_text(tmp_path, top, spinner))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("series", "pending"), [("6.1", True), ("6.12", False)])
def test_a_running_kthread_blocks_until_it_stops_except_on_6_12(series: str, pending: bool) -> None:
    records = predict(load_scenario(BUG), series)
    load, wait, stop = records[2], records[3], records[4]
    assert (load.pending is not None, wait.pending is not None) == (pending, pending)
    assert load.sysfs["klp_patch/transition"] == ("1" if pending else "0")
    state = "0" if pending else "-1"  # switched on 6.12: the transition is over
    ran = "orig" if pending else "klp_patch"
    assert load.actors["klp_target:spinner"] == f"patch_state={state} ran={ran}"
    assert stop.pending is None and stop.actors["klp_target:spinner"] == "stopped"
    assert ("livepatch: 'klp_patch': patching complete" in stop.log) == pending


def test_when_it_ends_on_7_3_is_timing_refused() -> None:
    with pytest.raises(ScenarioError) as info:
        predict(load_scenario(BUG), "7.3")
    assert "steps[2]: `load klp_patch --nowait`: klp_target's spinner runs on CPU 1" in str(
        info.value
    )


def test_the_same_kthread_on_one_cpu_switches_at_once(tmp_path: Path) -> None:
    """Unbound on a one-CPU guest, it is off the CPU whenever an attempt runs."""
    text = BUG.read_text().replace("cpus = 2\n", "").replace(", cpu = 1", "")
    path = tmp_path / "one.toml"
    path.write_text(text)
    for series in ("6.1", "6.12", "7.3"):
        assert predict(load_scenario(path), series)[2].pending is None


def test_a_guest_made_ahead_serves_only_its_cpu_count(tmp_path: Path, monkeypatch: Any) -> None:
    class FakeGuest:
        closed = False

        def close(self) -> None:
            self.closed = True

    made: list[tuple[int, FakeGuest]] = []

    def make(modules: dict[str, Path], cpus: int = 1) -> ReadyGuest:
        guest = FakeGuest()
        made.append((cpus, guest))
        return ReadyGuest(guest, modules, cpus)  # type: ignore[arg-type]

    dirs = (tmp_path, tmp_path, tmp_path)
    profile = KernelProfile("p", "r", "1.0", "vm", tmp_path / "k", *dirs, livepatch=True)
    source = GuestSource(profile, snapshot_root=tmp_path / "snaps")
    monkeypatch.setattr(source, "_make", make)
    try:
        source.prefetch({}, 1)
        ready = source.take({}, 2)
        assert ready.cpus == 2 and [c for c, _ in made] == [1, 2]
        assert made[0][1].closed  # the one-CPU guest made ahead is not kept
        source.prefetch({}, 2)
        assert source.take({}, 2).guest is made[2][1]  # type: ignore[comparison-overlap]
    finally:
        source.close()


def test_without_snapshots_a_guest_is_booted_again_for_another_cpu_count(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A cleaned guest is reused across scenarios, but not by one wanting other CPUs."""
    from harness.runner.manager import GuestManager

    class FakeGuest:
        def close(self) -> None:
            pass

    booted: list[int] = []

    def boot_guest(cpus: int = 1) -> FakeGuest:
        booted.append(cpus)
        return FakeGuest()

    dirs = (tmp_path, tmp_path, tmp_path)
    profile = KernelProfile("p", "r", "1.0", "vm", tmp_path / "k", *dirs, livepatch=True)
    manager = GuestManager(profile, snapshots=False)
    monkeypatch.setattr(manager.source, "boot_guest", boot_guest)
    try:
        first = manager.clean_guest(cpus=1)
        assert manager.clean_guest(cpus=1) is first  # not dirty: the same guest
        manager.clean_guest(cpus=2)
        assert booted == [1, 2]
    finally:
        manager.close()


def test_a_booted_guest_gets_the_scenarios_modules(tmp_path: Path, monkeypatch: Any) -> None:
    """Without snapshots, the first scenario's guest is booted, not resumed: its
    modules are installed all the same (a load found no module file before), and
    again after the guest is cleaned for the next scenario."""
    from harness.runner import manager as manager_module
    from harness.runner.manager import GuestManager

    class FakeGuest:
        def close(self) -> None:
            pass

        def check_alive(self) -> None:
            pass

    installed: list[dict[str, Path]] = []
    monkeypatch.setattr(manager_module, "install_modules", lambda _g, m: installed.append(m))
    monkeypatch.setattr(manager_module.reset, "clean", lambda _g, _b: [])
    dirs = (tmp_path, tmp_path, tmp_path)
    profile = KernelProfile("p", "r", "1.0", "vm", tmp_path / "k", *dirs, livepatch=True)
    manager = GuestManager(profile, snapshots=False)
    monkeypatch.setattr(manager.source, "boot_guest", lambda cpus=1: FakeGuest())
    manager.source.baseline = object()  # type: ignore[assignment]
    first, second = {"a": tmp_path / "a.ko"}, {"b": tmp_path / "b.ko"}
    try:
        guest = manager.clean_guest(first)
        manager.mark_dirty()
        manager._installed = False  # as run_scenario leaves it
        assert manager.clean_guest(second) is guest  # cleaned, not booted again
        assert installed == [first, second]
    finally:
        manager.close()
