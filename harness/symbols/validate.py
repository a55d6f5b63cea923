"""Check a scenario's real functions against a profile's symbols, before any build.

Every func of a patch object that is vmlinux or a module of the kernel must be a
function of that object in this profile, unique or chosen by `sympos`, and ftrace-able
(livepatch redirects a function at its ftrace call site: a notrace function has none,
an inlined one no symbol).  A problem is one `ScenarioError` naming the field and the
choices, e.g. `x.toml: patch[0].object[0].funcs[1]: debian-6.1: vmlinux has no function
'getpidd' (close: getpid, ...)`.
"""

from __future__ import annotations

import difflib

from harness.errors import ScenarioError
from harness.kernel.profiles import KernelProfile
from harness.scenario.step_types import Trigger
from harness.scenario.types import VMLINUX, VMLINUX_FUNCS, PatchObject, Scenario
from harness.symbols.data import ObjectSymbols, find_module_file, module_key, module_symbols
from harness.symbols.record import VmlinuxRecord, vmlinux_record


def needs_symbols(scenario: Scenario) -> bool:
    """Whether a scenario names a function outside the generated targets and the
    vmlinux functions every profile is known to have."""
    if scenario.bpf:
        return True
    targets = {t.name for t in scenario.targets}
    for step in scenario.steps:
        for watch in step.watch if isinstance(step, Trigger) else ():
            if watch.object != VMLINUX or watch.func not in VMLINUX_FUNCS or watch.sympos > 1:
                return True
    for patch in scenario.patches:
        for obj in patch.objects:
            if obj.name in targets:
                continue
            if obj.name != VMLINUX or any(
                f not in VMLINUX_FUNCS or obj.spec(f).sympos > 1 for f in obj.funcs
            ):
                return True
    return False


def validate_symbols(scenarios: list[Scenario], profiles: list[KernelProfile]) -> None:
    """Check every scenario that needs it on every profile it runs on; records a
    profile's vmlinux symbols first if they are not cached (one guest boot)."""
    records: dict[str, VmlinuxRecord] = {}
    for scenario in scenarios:
        if not needs_symbols(scenario):
            continue
        for profile in profiles:
            if scenario.kernels and profile.name not in scenario.kernels:
                continue
            if profile.name not in records:
                records[profile.name] = vmlinux_record(profile)
            check_scenario(scenario, profile, records[profile.name])


def check_scenario(scenario: Scenario, profile: KernelProfile, vmlinux: VmlinuxRecord) -> None:
    targets = {t.name for t in scenario.targets}
    for i, patch in enumerate(scenario.patches):
        for j, obj in enumerate(patch.objects):
            if obj.name in targets:
                continue
            where = f"patch[{i}].object[{j}]"
            try:
                symbols = object_symbols(scenario, obj, profile, vmlinux, where)
                for k, func in enumerate(obj.funcs):
                    check_func(symbols, func, obj.spec(func).sympos, f"{where}.funcs[{k}]")
            except ScenarioError as exc:
                raise ScenarioError(
                    exc.where, f"{profile.name}: {exc.message}", str(scenario.path)
                ) from None
    for i, prog in enumerate(scenario.bpf):  # a trampoline is called from the call site
        try:
            check_func(vmlinux.symbols, prog.func, 0, f"bpf[{i}].func")
        except ScenarioError as exc:
            raise ScenarioError(
                exc.where, f"{profile.name}: {exc.message}", str(scenario.path)
            ) from None
    for index, step in enumerate(scenario.steps):
        for watch in step.watch if isinstance(step, Trigger) else ():
            if watch.object in targets:
                continue
            try:
                found = watched_symbols(scenario, watch.object, profile, vmlinux)
                if found is not None:
                    check_func(found, watch.func, watch.sympos, f"steps[{index}]", watch.key)
            except ScenarioError as exc:
                raise ScenarioError(
                    exc.where, f"{profile.name}: {exc.message}", str(scenario.path)
                ) from None


def watched_symbols(
    scenario: Scenario, obj: str, profile: KernelProfile, vmlinux: VmlinuxRecord
) -> ObjectSymbols | None:
    """The symbols of a watched function's object: vmlinux, a module of the kernel;
    None for a module file (read when the scenario is, harness.modules.external)."""
    if obj == VMLINUX:
        return vmlinux.symbols
    if any(t.name == obj for t in scenario.targets):
        return None
    path = find_module_file(profile.modules_dir, obj)
    return module_symbols(path) if path is not None else None


def object_symbols(
    scenario: Scenario,
    obj: PatchObject,
    profile: KernelProfile,
    vmlinux: VmlinuxRecord,
    where: str,
) -> ObjectSymbols:
    if obj.name == VMLINUX:
        return vmlinux.symbols
    path = find_module_file(profile.modules_dir, obj.name)
    if path is None:
        raise ScenarioError(
            f"{where}.name",
            f"{obj.name!r} is neither {VMLINUX!r}, a scenario target nor a module of the kernel",
        )
    if module_key(obj.name) in vmlinux.loaded_modules:
        raise ScenarioError(
            f"{where}.name",
            f"{obj.name!r} is loaded in the guest before any step (loaded: "
            f"{', '.join(sorted(vmlinux.loaded_modules))}); the model does not know it",
        )
    return module_symbols(path)


def check_func(
    symbols: ObjectSymbols, func: str, sympos: int, where: str, watched: str = ""
) -> None:
    """Unknown, ambiguous without sympos, sympos out of range, not ftrace-able; a
    trigger's `watched` function (its key) is named as the step names it."""
    count = symbols.count(func)
    if count == 0:
        close = difflib.get_close_matches(func, symbols.counts.keys(), n=4, cutoff=0.75)
        hint = f" (close: {', '.join(close)})" if close else ""
        raise ScenarioError(where, f"{symbols.name} has no function {func!r}{hint}")
    if count > 1 and sympos == 0:
        choose = f"watch {watched},1..{count}" if watched else f"sympos = 1..{count}"
        raise ScenarioError(
            where,
            f"{func!r} is defined {count} times in {symbols.name}: choose one with {choose}",
        )
    if sympos > count:
        raise ScenarioError(
            f"{where}.sympos",
            f"sympos {sympos} out of range: {func!r} is defined {count} time"
            f"{'s' if count > 1 else ''} in {symbols.name} (sympos = "
            f"{'1' if count == 1 else f'1..{count}'}, or 0 when unique)",
        )
    if func not in symbols.ftraceable:
        what = "watch" if watched else "patch"
        raise ScenarioError(
            where,
            f"{symbols.name}:{func} is not ftrace-able (notrace, or no ftrace call site), "
            f"so livepatch cannot redirect it; {what} a caller or a callee instead",
        )
