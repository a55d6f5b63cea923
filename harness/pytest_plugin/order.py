"""Test order for pytest-xdist's `worksteal` scheduler: long tests start first, spread
over the workers.

What worksteal does with the order (xdist/scheduler/worksteal.py, pytest-xdist 3.x):
`schedule()` hands the N workers one contiguous slice each of the collection, in order
(`_send_tests` takes `len(pending) // nodes_remaining` from the front for each idle
worker); a worker then runs its slice in order; a worker left with fewer than 2 tests
steals the *last* half of the longest queue (`steal_from.pending[-num_steal:]`), and
nothing is stolen from a queue of 2 or fewer.  So moving the long tests to the front
of the collection puts them all in the first worker's slice, one after another, while
the other workers steal its short tail and then wait.  Here the long tests are dealt
over the N slices (longest first, each to the slice with the least recorded time) and
put at the front of their slice, then the other tests fill the slices in their order.

Durations come from a table (test id -> seconds) measured on a run of the suite: a
test it lacks counts as short.  The order depends only on the table, the collection
and N, so every worker computes the same one (xdist requires identical collections).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")


def worksteal_slices(total: int, workers: int) -> list[int]:
    """Sizes of the slices worksteal's first `check_schedule` hands out, in order."""
    sizes, remaining = [], total
    for index in range(workers):
        size = remaining // (workers - index)
        sizes.append(size)
        remaining -= size
    return sizes


def long_first(ids: Sequence[str], seconds: Mapping[str, float], workers: int | None) -> list[int]:
    """A permutation of range(len(ids)): the long tests (those in `seconds`) first in
    each worker's slice and balanced over the slices; without xdist (`workers` None or
    1), all long tests first, longest first.  Other tests keep their relative order."""
    long = sorted(
        (i for i, key in enumerate(ids) if key in seconds), key=lambda i: -seconds[ids[i]]
    )
    short = [i for i, key in enumerate(ids) if key not in seconds]
    if not workers or workers <= 1:
        return long + short
    sizes = worksteal_slices(len(ids), workers)
    slices: list[list[int]] = [[] for _ in sizes]
    loads = [0.0] * workers
    for i in long:
        open_slices = [s for s in range(workers) if len(slices[s]) < sizes[s]]
        target = min(open_slices, key=lambda s: (loads[s], s))
        slices[target].append(i)
        loads[target] += seconds[ids[i]]
    rest = iter(short)
    for index, size in enumerate(sizes):
        slices[index] += [next(rest) for _ in range(size - len(slices[index]))]
    return [i for part in slices for i in part]


def reorder(items: list[T], order: Sequence[int]) -> None:
    """Put `items` in `order` (a permutation of its indexes), in place."""
    items[:] = [items[i] for i in order]
