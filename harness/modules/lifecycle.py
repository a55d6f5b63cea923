"""A standard life cycle for a set of module files, without a scenario file: what
`klp-harness check FILE.ko...` runs.

The files are checked and read for one profile (`harness.modules.external`); the
modules of the kernel their patches name are loaded first; then each file is loaded
in the order given (a patch with `replace` replaces those before it, as the kernel
does); then every patch still enabled is disabled, last first; then every module is
unloaded, last first.  Patches given a check command (`--check NAME=CMD`) are
checked before anything is loaded, after each patch's load and each disable, wherever
the model can say whether the check passes (harness/model/check.py).

Which steps come next depends on what the earlier ones did (a replaced patch has
nothing left to disable), so the steps are chosen while the model predicts them;
the guest then runs them and every step is compared with the model as in any run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from harness.errors import ScenarioError, UsageError
from harness.kernel.profiles import KernelProfile
from harness.model.predict import StepModel
from harness.modules.external import ProfileResolver, modinfo_of
from harness.scenario.naming import safe_component
from harness.scenario.step_types import Check, Disable, Load, Step, Unload
from harness.scenario.types import VMLINUX, PatchModule, Scenario, TargetModule


def _modules(
    refs: Sequence[str], checks: dict[str, str], resolver: ProfileResolver
) -> tuple[list[TargetModule | PatchModule], dict[str, Path]]:
    """Targets and patches of the files, in the order given, and their files."""
    modules: list[TargetModule | PatchModule] = []
    files: dict[str, Path] = {}
    for ref in refs:
        path = resolver.locate(ref, Path.cwd())
        livepatch = path.is_file() and modinfo_of(path).get("livepatch") == ["Y"]
        name, checked = resolver.module_file(ref, Path.cwd(), livepatch)
        if name in files:
            raise UsageError(f"{ref}: module {name} given twice")
        files[name] = checked
        if livepatch:
            structure = resolver.structure(checked)
            modules.append(
                PatchModule(
                    name,
                    structure.objects,
                    replace=structure.replace,
                    states=structure.states,
                    ko=ref,
                    callback_lines=False,  # what its callbacks print is not known
                    check=checks.pop(name, ""),
                )
            )
        else:
            modules.append(
                TargetModule(name, log_init_exit=False, ko=ref, symbols=resolver.functions(checked))
            )
    if checks:
        raise UsageError(
            f"--check {next(iter(checks))}=...: no livepatch module of that name given"
        )
    return modules, files


def life_cycle(refs: Sequence[str], checks: dict[str, str], resolver: ProfileResolver) -> Scenario:
    """The scenario of the standard life cycle of `refs` on the resolver's profile."""
    profile = resolver.profile
    modules, files = _modules(refs, dict(checks), resolver)
    targets = tuple(m for m in modules if isinstance(m, TargetModule))
    patches = tuple(m for m in modules if isinstance(m, PatchModule))
    names = {m.name for m in modules}
    kernel_objects = list(
        dict.fromkeys(
            obj.name
            for p in patches
            for obj in p.objects
            if obj.name != VMLINUX and obj.name not in names
        )
    )
    first = safe_component(modules[0].name if modules else "empty")
    scenario = Scenario(
        path=Path("check") / f"{first}.toml",
        description=f"Standard life cycle of {', '.join(refs)} on {profile.name}.",
        steps=(),
        targets=targets,
        patches=patches,
        resolved_for=profile.name,
        files=tuple(files.items()),
    )
    return _with_steps(scenario, kernel_objects, [m.name for m in modules], profile)


class _Planner:
    """Appends steps while the model predicts them, keeping checks it can predict."""

    def __init__(self, scenario: Scenario, profile: KernelProfile) -> None:
        self.scenario = scenario
        self.model = StepModel(scenario, profile.series)
        self.steps: list[Step] = []
        self.checked = [p.name for p in scenario.patches if p.check]

    def add(self, step: Step) -> None:
        self.model.step(len(self.steps), step)
        self.steps.append(step)

    def checks(self) -> None:
        for patch in self.checked:
            step = Check(patch)
            saved = self.model.kernel.log
            try:
                self.model.step(len(self.steps), step)
            except ScenarioError:  # the model cannot say: leave that check out
                self.model.kernel.log = saved
                continue
            self.steps.append(step)

    def enabled(self, patch: str) -> bool:
        return self.model.last is not None and self.model.last.sysfs.get(f"{patch}/enabled") == "1"

    def loaded(self, module: str) -> bool:
        return module in self.model.kernel.modules


def _with_steps(
    scenario: Scenario, kernel_objects: list[str], order: list[str], profile: KernelProfile
) -> Scenario:

    plan = _Planner(scenario, profile)
    plan.checks()
    patches = {p.name for p in scenario.patches}
    for name in [*kernel_objects, *order]:
        plan.add(Load(name))
        if name in patches:
            plan.checks()
    for patch in reversed([p.name for p in scenario.patches]):
        if plan.enabled(patch):
            plan.add(Disable(patch))
            plan.checks()
    for name in reversed([*kernel_objects, *order]):
        if plan.loaded(name):
            plan.add(Unload(name))
    return replace(scenario, steps=tuple(plan.steps))
