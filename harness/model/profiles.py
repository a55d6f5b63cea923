"""Kernel-version differences the model knows about, in one place.

The model is written against Linux 6.1 (Debian 6.1.192).  Each later difference that a
scenario can observe is one field of `ModelProfile`, set in the profile of the first
series that has it, with the upstream version that introduced it.  Differences that
exist but that no scenario step can observe are listed in `UNOBSERVABLE` so that a
reader knows they were considered.
"""

from __future__ import annotations

import dataclasses
import re
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


# When each difference appeared upstream; the PROFILES above agree with it (tested).
SINCE = {"sysfs_replace": (6, 11), "sysfs_stack_order": (6, 13)}
MODELLED = ("sysfs_replace",)  # what predict() implements; stack_order is not yet


def _version(series: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", series)
    return (int(match.group(1)), int(match.group(2))) if match else None


def profile_for(series: str) -> ModelProfile:
    """The model profile of a kernel series: a known one ("6.1", "6.12"), or for any
    later "X.Y" (a user's own tree) the rules of `model_series(X.Y)` with every
    difference set by the version that introduced it (6.11 has sysfs `replace`).
    Older series are refused: the model is a reading of 6.1, and older kernels differ
    in what scenarios observe (klp_state arrived in 5.5, for one)."""
    if series in PROFILES:
        return PROFILES[series]
    version = _version(series)
    if version is None or version < _OLDEST:
        raise UsageError(
            f"the model knows no kernel series {series!r} (known: {', '.join(PROFILES)}, "
            "and later series by the newest of them not newer)"
        )
    base = PROFILES[model_series(series)]
    since = {name: version >= first for name, first in SINCE.items()}
    return dataclasses.replace(base, series=f"{version[0]}.{version[1]}", **since)


def _known() -> list[str]:
    return sorted(PROFILES, key=lambda s: _version(s) or (0, 0))


_OLDEST = _version(_known()[0]) or (0, 0)


def model_series(version: str) -> str:
    """The known series whose rules apply to a kernel `version` ("6.9.0", "7.0"): the
    newest not newer than it (the oldest for anything else; profile_for refuses it)."""
    wanted = _version(version) or (0, 0)
    older = [s for s in _known() if (_version(s) or (0, 0)) <= wanted]
    return older[-1] if older else _known()[0]


def describe_choice(version: str) -> str:
    """One line saying which rules the model applies to a kernel `version` and what
    it cannot predict there (said when a user's tree is selected)."""
    series = model_series(version)
    wanted = _version(version) or (0, 0)
    line = f"kernel {version}: the model applies its {series} rules"
    extra = [
        f"{name} (v{first[0]}.{first[1]})"
        for name, first in SINCE.items()
        if wanted >= first and not getattr(PROFILES[series], name) and name in MODELLED
    ]
    unmodelled = [
        f"{name} (v{first[0]}.{first[1]})"
        for name, first in SINCE.items()
        if wanted >= first and name not in MODELLED
    ]
    if extra:
        line += f", with {', '.join(extra)}"
    if unmodelled:
        line += f"; not modelled yet, so steps will differ: {', '.join(unmodelled)}"
    return line
