"""The order handed to pytest-xdist's worksteal scheduler spreads the long tests."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.pytest_plugin.order import long_first, worksteal_slices


def simulate_first_slices(ids: list[str], order: list[int], workers: int) -> list[list[str]]:
    """The slices worksteal hands out first, as xdist/scheduler/worksteal.py does it."""
    pending = [ids[i] for i in order]
    slices = []
    for index in range(workers):
        take = len(pending) // (workers - index)
        slices.append(pending[:take])
        del pending[:take]
    return slices


def test_slices_match_worksteal() -> None:
    assert worksteal_slices(10, 3) == [3, 3, 4]
    assert worksteal_slices(2, 3) == [0, 1, 1]
    assert sum(worksteal_slices(1570, 3)) == 1570


def test_long_tests_lead_every_slice() -> None:
    ids = [f"t{i}" for i in range(30)]
    seconds = {"t29": 240.0, "t28": 150.0, "t27": 80.0, "t5": 60.0}
    order = long_first(ids, seconds, workers=3)
    slices = simulate_first_slices(ids, order, 3)
    assert [s[0] for s in slices] == ["t29", "t28", "t27"]
    assert slices[2][:2] == ["t27", "t5"]  # the least loaded slice takes the next one
    assert slices[0][1:] == [f"t{i}" for i in range(10) if i != 5]  # the rest, in order


def test_without_workers_long_tests_come_first() -> None:
    ids = ["a", "b", "c", "d"]
    assert long_first(ids, {"c": 5.0, "d": 9.0}, workers=None) == [3, 2, 0, 1]
    assert long_first(ids, {}, workers=3) == [0, 1, 2, 3]


# A loaded machine can pause an example past the 200 ms deadline, or its generation.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.floats(min_value=0.1, max_value=300), max_size=40),
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=1, max_value=5),
)
def test_order_is_a_permutation_keeping_short_tests_in_order(
    long_seconds: list[float], short: int, workers: int
) -> None:
    ids = [f"long{i}" for i in range(len(long_seconds))] + [f"short{i}" for i in range(short)]
    seconds = dict(zip(ids, long_seconds, strict=False))
    order = long_first(ids, seconds, workers)
    assert sorted(order) == list(range(len(ids)))
    shorts = [ids[i] for i in order if ids[i].startswith("short")]
    assert shorts == [f"short{i}" for i in range(short)]
    for part in simulate_first_slices(ids, order, workers):
        durations = [seconds.get(key, 0.0) for key in part]
        assert durations == sorted(durations, reverse=True)  # long ones lead each slice


def test_recorded_durations_name_existing_tests() -> None:
    """A renamed test would silently drop out of the order: its file and function (or
    scenario file) must still exist."""
    from tests.conftest import recorded_seconds

    root = Path(__file__).parents[2]
    for test_id in recorded_seconds():
        path, _, name = test_id.partition("::")
        assert (root / path).is_file(), test_id
        if path.endswith(".py"):
            assert f"def {name.split('[')[0]}(" in (root / path).read_text(), test_id
