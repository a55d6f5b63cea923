"""Sharding, job counts and guest health checks of the runner (no VM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.runner import reset
from harness.runner.suite import Shard, default_jobs, shard_key

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def test_shards_split_every_scenario_exactly_once() -> None:
    keys = [shard_key(p) for p in sorted(SCENARIOS.rglob("*.toml"))]
    assert len(keys) > 40
    parts = [[k for k in keys if Shard(i, 3).holds(k)] for i in (1, 2, 3)]
    assert sorted(k for part in parts for k in part) == sorted(keys)
    assert all(parts)  # each part gets some


def test_shard_key_is_the_same_from_any_checkout() -> None:
    one = Path("/a/tests/scenarios/upstream/01_livepatch_basic.toml")
    two = Path("/elsewhere/x/scenarios/upstream/01_livepatch_basic.toml")
    assert shard_key(one) == shard_key(two) == "upstream/01_livepatch_basic.toml"


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "1/0"])
def test_bad_shards_are_one_line_errors(text: str) -> None:
    with pytest.raises(HarnessError, match="--shard"):
        Shard.parse(text)


def test_default_jobs_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLP_HARNESS_JOBS", "3")
    assert default_jobs() == 3
    monkeypatch.setenv("KLP_HARNESS_JOBS", "nonsense")
    assert default_jobs() >= 1


def test_taint_from_modules_and_livepatch_is_expected_warn_is_not() -> None:
    livepatch, oot, unsigned, warn, die = 1 << 15, 1 << 12, 1 << 13, 1 << 9, 1 << 7
    assert reset.unexpected_taint(0, livepatch | oot | unsigned) == ""
    assert reset.unexpected_taint(0, livepatch | warn) == "W"
    assert reset.unexpected_taint(warn, warn | die) == "D"  # only what is new
    assert reset.taint_letters(livepatch | oot | unsigned) == "OEK"


class FakeShell:
    def __init__(self, out: str) -> None:
        self.out = out

    def run(self, cmd: str, timeout: float = 30.0, check: bool = False) -> object:
        from harness.guest.result import CommandResult

        return CommandResult(0, self.out, "")


def test_guest_state_parsed_and_checked_against_the_baseline() -> None:
    out = "@@patches\np1\n@@modules\nvirtio_net\np1\n@@ftrace\n1\n@@taint\n33280\n"
    baseline = reset.GuestBaseline(frozenset({"virtio_net"}), 0)
    problems = reset.verify_clean(FakeShell(out), baseline)  # type: ignore[arg-type]
    assert problems == [
        "patches still registered: p1",
        "modules still loaded: p1",
        "kernel taint raised: W",  # 33280 = K (1<<15) | W (1<<9)
    ]


def test_capacity_is_the_smallest_count_near_the_best() -> None:
    from harness.runner.capacity import choose

    assert choose({1: 1.0, 2: 1.95, 3: 1.9}) == 2  # a third guest only queues
    assert choose({1: 1.0, 2: 1.05}) == 1  # a second guest barely helps
    assert choose({1: 1.0, 2: 1.6, 3: 2.4, 4: 2.5}) == 3


def test_measured_capacity_is_the_default_jobs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from harness.runner import capacity

    monkeypatch.delenv("KLP_HARNESS_JOBS", raising=False)
    monkeypatch.setattr(capacity, "cache_file", lambda: tmp_path / "capacity.json")
    assert capacity.cached_jobs() is None
    assert capacity.record({1: 1.0, 2: 1.9, 3: 1.95}) == 2
    assert capacity.cached_jobs() == 2
    assert default_jobs() == 2
