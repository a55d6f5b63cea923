"""A small module set and every step over it: raw material for property tests and the
benchmark, which drive the model with random step sequences.

The set is chosen so random sequences reach the interesting corners: two patches and
a cumulative one sharing functions (func stacks, nops, dynamic objects), blockers in
patched functions (blocked enables and disables, reverses, force), callbacks on
module objects (coming/going hooks during transitions), klp_state versions that make
some loads incompatible, a failing pre_patch, shadow variables and ftrace_enabled.
"""

from __future__ import annotations

from pathlib import Path

from harness.scenario.step_types import Step
from harness.scenario.steps import parse_steps
from harness.scenario.types import (
    VMLINUX,
    Blocker,
    Callback,
    KlpState,
    PatchModule,
    PatchObject,
    Scenario,
    ShadowOp,
    ShadowOpKind,
    TargetModule,
)

ALL = frozenset(Callback)

TARGETS = (
    TargetModule("t_alpha", ("f1", "f2"), Blocker("f1")),
    TargetModule(
        "t_beta",
        ("g1",),
        Blocker("g1", "park"),
        shadow=(ShadowOp(ShadowOpKind.GET_OR_ALLOC, 1, 1, 1), ShadowOp(ShadowOpKind.GET, 1, 1)),
    ),
)
PATCHES = (
    PatchModule(
        "p_one",
        (
            PatchObject(VMLINUX, ("cmdline_proc_show",), ALL),
            PatchObject("t_alpha", ("f1", "f2"), ALL),
        ),
        states=(KlpState(1, 1),),
    ),
    PatchModule(
        "p_two",
        (
            PatchObject("t_alpha", ("f1",), frozenset({Callback.PRE_PATCH, Callback.POST_UNPATCH})),
            PatchObject("t_beta", ("g1",), ALL),
        ),
        shadow=(ShadowOp(ShadowOpKind.FREE_ALL, 1),),
    ),
    PatchModule(
        "p_three",
        (PatchObject(VMLINUX, ("meminfo_proc_show",), ALL), PatchObject("t_beta", ("g1",), ALL)),
        states=(KlpState(1, 2), KlpState(7, 1)),
    ),
    PatchModule(
        "p_cum",
        (PatchObject(VMLINUX, (), ALL), PatchObject("t_alpha", ("f2",), ALL)),
        replace=True,
        states=(KlpState(1, 2),),
    ),
)

FUZZ_SCENARIO = Scenario(
    path=Path("fuzz.toml"),
    description="Random step sequences over a small module set.",
    steps=(),
    targets=TARGETS,
    patches=PATCHES,
)


def _step_texts() -> list[str]:
    texts: list[str] = []
    for target in TARGETS:
        assert target.blocker is not None
        name, param = target.name, target.blocker.param
        texts += [f"load {name}", f"load {name} {param}=Y", f"unload {name}"]
        texts += [f"park {name}", f"release {name}"]
        texts += [f"call {name}:{func}" for func in target.funcs]
    for patch in PATCHES:
        name = patch.name
        texts += [f"load {name}", f"load {name} --nowait", f"load {name} replace=1"]
        texts += [f"load {name} pre_patch_ret=-19", f"set {name} pre_patch_ret -19"]
        texts += [f"set {name} pre_patch_ret 0", f"unload {name}", f"enable {name}"]
        texts += [f"disable {name}", f"disable {name} --nowait", f"force {name}", f"wait {name}"]
    texts += ["sysctl ftrace_enabled=0", "sysctl ftrace_enabled=1"]
    texts += ["call vmlinux:cmdline_proc_show", "call vmlinux:meminfo_proc_show"]
    return texts


FUZZ_STEP_TEXTS = _step_texts()
FUZZ_STEPS: list[Step] = list(parse_steps(FUZZ_STEP_TEXTS, TARGETS, PATCHES))
