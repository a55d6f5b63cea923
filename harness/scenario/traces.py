"""What `trace` steps may name and how they pair up, checked when a scenario is loaded
(the steps parser calls these; the runner names the traced function with
`traced_replacement`).  See docs/scenario-format.md, "the function tracer"."""

from __future__ import annotations

from harness.errors import ScenarioError
from harness.scenario.step_types import Step, Trace, Unload, Untrace
from harness.scenario.types import VMLINUX, VMLINUX_FUNCS, PatchModule


def traced_replacement(patch: PatchModule, func: str, targets: set[str]) -> str | None:
    """The C name of PATCH's replacement of `func` (kmod_templates/livepatch.c.j2
    names it klp_harness_new_<object index>_<func>), or None when it has none or it is
    the assembly default replacement of a real function (no ftrace call site)."""
    for j, obj in enumerate(patch.objects):
        if func not in obj.funcs:
            continue
        generated = obj.name in targets or (obj.name == VMLINUX and func in VMLINUX_FUNCS)
        if generated or obj.spec(func).body is not None:
            return f"klp_harness_new_{j}_{func}"
        return None
    return None


def check_traces(steps: tuple[Step, ...]) -> None:
    """One trace at a time, each ended by `untrace`, and the module whose function it
    traces stays loaded until then: the trace prints a module function by name only
    while the module is there (the model refuses the rest)."""
    active: Trace | None = None
    for i, step in enumerate(steps):
        if isinstance(step, Trace):
            if active is not None:
                raise ScenarioError(
                    f"steps[{i}]", f"`trace` while {active.label} is traced: untrace first"
                )
            active = step
        elif isinstance(step, Untrace):
            if active is None:
                raise ScenarioError(f"steps[{i}]", "`untrace` without a `trace` before it")
            active = None
        elif isinstance(step, Unload) and active is not None and step.module == active.object:
            raise ScenarioError(
                f"steps[{i}]",
                f"`unload {step.module}` while {active.label} is traced: untrace first",
            )
    if active is not None:
        raise ScenarioError("steps", f"{active.label} is traced to the end: add `untrace`")
