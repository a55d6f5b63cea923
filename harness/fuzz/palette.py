"""The modules random histories are made of.

A history's module set is the two targets plus a few patches chosen from `PATCHES`,
each a distinct design: a lone vmlinux patch, patches that share functions (func
stacks), one on a module object only, one with no callbacks, cumulative ones with and
without klp_states (nops, dynamic objects, compatibility refusals), a shadow-variable
script.  Every module has a name of its own, so the whole palette is built once
(cached per module) and installed in every guest: the next history's guest can be
prepared while one runs, whatever set it draws, and a chosen set needs no build.

Order matters to the shrinker: hypothesis prefers earlier choices, so the simplest
patch comes first and a minimal history names the simplest modules that show it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from harness.model.fuzz import PATCHES as MODEL_PATCHES
from harness.model.fuzz import TARGETS as TARGETS
from harness.scenario.step_types import Step
from harness.scenario.steps import parse_steps
from harness.scenario.types import (
    VMLINUX,
    Callback,
    PatchModule,
    PatchObject,
    Scenario,
    ShadowOp,
    ShadowOpKind,
)

ALL = frozenset(Callback)
NONE: frozenset[Callback] = frozenset()
_MODEL = {p.name: p for p in MODEL_PATCHES}  # the model's own random-step set

PATCHES = (
    # one vmlinux function, every callback
    PatchModule("p_cmd", (PatchObject(VMLINUX, ("cmdline_proc_show",), ALL),)),
    # vmlinux and a module object, a klp_state
    _MODEL["p_one"],
    # cumulative with a state: nops for whatever it does not patch
    _MODEL["p_cum"],
    # module objects only, some callbacks, a shadow script
    _MODEL["p_two"],
    # two states, one the cumulative patches lack
    _MODEL["p_three"],
    # no callbacks at all; a shadow script of its own objects (alloc, get, free with a
    # destructor; free_all with one finds nothing): new objects each load, so it never
    # meets an earlier instance's variables
    PatchModule(
        "p_mem",
        (
            PatchObject(VMLINUX, ("meminfo_proc_show",), NONE),
            PatchObject("t_alpha", ("f1",), NONE),
        ),
        shadow=(
            ShadowOp(ShadowOpKind.GET, 2, 1),
            ShadowOp(ShadowOpKind.ALLOC, 2, 1, 1),
            ShadowOp(ShadowOpKind.GET_OR_ALLOC, 2, 1, 1),
            ShadowOp(ShadowOpKind.FREE, 2, 1, dtor=True),
            ShadowOp(ShadowOpKind.FREE_ALL, 3, dtor=True),
        ),
    ),
    # cumulative without states, callbacks on a module object
    PatchModule(
        "p_rep",
        (
            PatchObject(VMLINUX, ("cmdline_proc_show",), NONE),
            PatchObject("t_beta", ("g1",), frozenset({Callback.PRE_PATCH, Callback.POST_PATCH})),
        ),
        replace=True,
    ),
)

PALETTE = Scenario(
    path=Path("fuzz-palette.toml"),
    description="Every module random histories are made of.",
    steps=(),
    targets=TARGETS,
    patches=PATCHES,
)

PATCH_NAMES = tuple(p.name for p in PATCHES)
MAX_PATCHES = 4


def module_set(names: Iterable[str]) -> tuple[str, ...]:
    """A module set's patch names in palette order (the canonical form)."""
    chosen = set(names)
    unknown = chosen - set(PATCH_NAMES)
    if unknown:
        raise ValueError(f"not in the palette: {', '.join(sorted(unknown))}")
    return tuple(name for name in PATCH_NAMES if name in chosen)


@lru_cache(maxsize=256)
def scenario_of(patches: tuple[str, ...], name: str = "fuzz") -> Scenario:
    """The scenario (without steps) of a module set: both targets, the chosen patches."""
    return Scenario(
        path=Path(f"{name}.toml"),
        description="A random history over palette modules.",
        steps=(),
        targets=TARGETS,
        patches=tuple(p for p in PATCHES if p.name in patches),
    )


def _step_texts(patches: Sequence[PatchModule]) -> list[str]:
    """Every step over a module set; loads first (the shrinker's favourites)."""
    texts = [f"load {p.name}" for p in patches] + [f"load {t.name}" for t in TARGETS]
    for patch in patches:
        name = patch.name
        texts += [f"disable {name}", f"unload {name}", f"load {name} replace=1"]
        texts += [f"load {name} --nowait", f"disable {name} --nowait", f"enable {name}"]
        texts += [f"force {name}", f"wait {name}", f"load {name} pre_patch_ret=-19"]
        texts += [f"set {name} pre_patch_ret -19", f"set {name} pre_patch_ret 0"]
    for target in TARGETS:
        assert target.blocker is not None
        name, param = target.name, target.blocker.param
        texts += [f"unload {name}", f"park {name}", f"release {name}", f"load {name} {param}=Y"]
        texts += [f"call {name}:{func}" for func in target.funcs]
    texts += ["call vmlinux:cmdline_proc_show", "call vmlinux:meminfo_proc_show"]
    texts += ["sysctl ftrace_enabled=0", "sysctl ftrace_enabled=1"]
    return texts


@lru_cache(maxsize=256)
def steps_of(patches: tuple[str, ...]) -> tuple[Step, ...]:
    """Every step a history over this module set may take."""
    scenario = scenario_of(patches)
    return parse_steps(_step_texts(scenario.patches), scenario.targets, scenario.patches)
