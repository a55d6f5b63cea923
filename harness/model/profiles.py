"""Kernel-version differences the model knows about, in one place.

The model is written against Linux 6.1 (Debian 6.1.192).  Each later difference that a
scenario can observe is one field of `ModelProfile`, set in the profile of the first
series that has it, with the upstream version that introduced it.  Differences that
exist but that no scenario step can observe are listed in `UNOBSERVABLE` so that a
reader knows they were considered.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import UsageError


@dataclass(frozen=True)
class ModelProfile:
    series: str
    # /sys/kernel/livepatch/<patch>/replace (0444): "livepatch: Add "replace" sysfs
    # attribute", v6.11 (Documentation/ABI/testing/sysfs-kernel-livepatch says 6.11.0).
    sysfs_replace: bool = False
    # /sys/kernel/livepatch/<patch>/stack_order (0444): "livepatch: Add stack_order sysfs
    # attribute", v6.13 -- not in 6.12 (checked against Debian's 6.12.117 source).
    sysfs_stack_order: bool = False


PROFILES: dict[str, ModelProfile] = {
    "6.1": ModelProfile("6.1"),
    "6.12": ModelProfile("6.12", sysfs_replace=True),
}

DEFAULT_SERIES = "6.1"

UNOBSERVABLE = {
    # "livepatch,sched: Add livepatch task switching to cond_resched()", v6.4: tasks can
    # also switch in cond_resched().  Our blockers sleep in msleep(), which is no
    # cond_resched() switch point, so nothing a scenario sees changes.
    "cond_resched switching": "v6.4",
    # klp_check_stack() uses per-CPU entry buffers and switches `current` without
    # task_call_func() (v6.3/v6.4 refactors): same decisions.
    "stack check refactors": "v6.3",
    # KLP_UNDEFINED renamed KLP_TRANSITION_IDLE (v6.7): a name only.
    "KLP_TRANSITION_* names": "v6.7",
}


def profile_for(series: str) -> ModelProfile:
    """The model profile of a kernel series ("6.1", "6.12")."""
    try:
        return PROFILES[series]
    except KeyError:
        raise UsageError(
            f"the model knows no kernel series {series!r} (known: {', '.join(PROFILES)})"
        ) from None
