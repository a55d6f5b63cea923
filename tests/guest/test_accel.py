"""Choosing KVM or TCG, with a fake probe runner (no QEMU started)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.guest.accel import KVM_ARGS, TCG_ARGS, choose_accel

KERNEL = Path("/k/bzImage")


class FakeProbe:
    """Stands in for booting QEMU: answers `boots`, records each call."""

    def __init__(self, boots: bool) -> None:
        self.boots = boots
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> bool:
        self.calls.append(list(argv))
        assert 0 < timeout <= 30, "the probe must be short"
        return self.boots


@pytest.fixture
def kvm_device(tmp_path: Path) -> Path:
    device = tmp_path / "kvm"
    device.write_text("")
    return device


def choose(
    tmp_path: Path,
    probe: FakeProbe,
    device: Path,
    *,
    key: str = "machine-1",
    env: dict[str, str] | None = None,
    requested: str | None = None,
) -> str:
    accel = choose_accel(
        KERNEL,
        tmp_path / "accel.json",
        runner=probe,
        kvm_device=device,
        key=key,
        env=env or {},
        requested=requested,
    )
    assert accel.args == (KVM_ARGS if accel.name == "kvm" else TCG_ARGS)
    return accel.name


def test_no_kvm_device_means_tcg_without_probing(tmp_path: Path) -> None:
    probe = FakeProbe(boots=True)
    assert choose(tmp_path, probe, tmp_path / "missing") == "tcg"
    assert probe.calls == []


def test_probe_that_boots_selects_kvm(tmp_path: Path, kvm_device: Path) -> None:
    probe = FakeProbe(boots=True)
    assert choose(tmp_path, probe, kvm_device) == "kvm"
    argv = probe.calls[0]
    assert argv[argv.index("-accel") + 1] == "kvm"
    assert argv[argv.index("-kernel") + 1] == str(KERNEL)
    assert "-initrd" not in argv  # the kernel panics at mount root: that ends the probe
    assert "-no-reboot" in argv


def test_probe_that_hangs_falls_back_to_tcg(tmp_path: Path, kvm_device: Path) -> None:
    assert choose(tmp_path, FakeProbe(boots=False), kvm_device) == "tcg"


def test_result_is_cached_per_machine(tmp_path: Path, kvm_device: Path) -> None:
    first = FakeProbe(boots=False)
    assert choose(tmp_path, first, kvm_device) == "tcg"
    again = FakeProbe(boots=True)
    assert choose(tmp_path, again, kvm_device) == "tcg"  # cached: not probed again
    assert again.calls == []
    other = FakeProbe(boots=True)
    assert choose(tmp_path, other, kvm_device, key="machine-2") == "kvm"
    assert len(other.calls) == 1


def test_corrupt_cache_is_ignored(tmp_path: Path, kvm_device: Path) -> None:
    (tmp_path / "accel.json").write_text("{not json")
    probe = FakeProbe(boots=True)
    assert choose(tmp_path, probe, kvm_device) == "kvm"
    assert len(probe.calls) == 1


def test_environment_and_request_override(tmp_path: Path, kvm_device: Path) -> None:
    probe = FakeProbe(boots=True)
    assert choose(tmp_path, probe, kvm_device, env={"KLP_HARNESS_ACCEL": "tcg"}) == "tcg"
    assert choose(tmp_path, probe, tmp_path / "missing", requested="kvm") == "kvm"
    assert probe.calls == []
    with pytest.raises(UsageError):
        choose(tmp_path, probe, kvm_device, requested="xen")
