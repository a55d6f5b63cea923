"""Test order for parallel runs: the longest tests start first.

Under pytest-xdist (`make test`) workers take tests in collection order; a test of a
minute and a half collected last would run alone at the end while the other workers
idle.  The long ones (upstream's selftest scripts, the bounded random histories) are
moved to the front; everything else keeps its order.
"""

from __future__ import annotations

import pytest

LONG_FIRST = ("test_selftests_vm.py", "test_fuzz_vm.py", "test_parallel_vm.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONG_FIRST.index(name) if name in LONG_FIRST else len(LONG_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order
