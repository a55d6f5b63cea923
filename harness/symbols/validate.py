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
from harness.scenario.step_types import Load, Trigger
from harness.scenario.types import VMLINUX, VMLINUX_FUNCS, PatchObject, Scenario
from harness.symbols.data import ObjectSymbols, find_module_file, module_key, module_symbols
from harness.symbols.record import VmlinuxRecord, vmlinux_record


def needs_symbols(scenario: Scenario) -> bool:
    """Whether a scenario names a function outside the generated targets and the
    vmlinux functions every profile is known to have."""
    if scenario.bpf:
        return True
    targets = {t.name for t in scenario.targets}
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
            if watch.object == VMLINUX and vmlinux.symbols.count(watch.func) > 1:
                raise ScenarioError(
                    f"steps[{index}]",
                    f"{profile.name}: {watch.key} is defined "
                    f"{vmlinux.symbols.count(watch.func)} times: a trigger watches a "
                    "function by name (kprobe_events), so only a unique one",
                    str(scenario.path),
                )


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
    loads = {s.module for s in scenario.steps if isinstance(s, Load)}
    if obj.name not in loads:
        raise ScenarioError(
            f"{where}.name",
            f"{obj.name!r} is a module of the kernel that no step loads (add `load {obj.name}`)",
        )
    if module_key(obj.name) in vmlinux.loaded_modules:
        raise ScenarioError(
            f"{where}.name",
            f"{obj.name!r} is loaded in the guest before any step (loaded: "
            f"{', '.join(sorted(vmlinux.loaded_modules))}); the model does not know it",
        )
    return module_symbols(path)


def check_func(symbols: ObjectSymbols, func: str, sympos: int, where: str) -> None:
    """Unknown, ambiguous without sympos, sympos out of range, not ftrace-able."""
    count = symbols.count(func)
    if count == 0:
        close = difflib.get_close_matches(func, symbols.counts.keys(), n=4, cutoff=0.75)
        hint = f" (close: {', '.join(close)})" if close else ""
        raise ScenarioError(where, f"{symbols.name} has no function {func!r}{hint}")
    if count > 1 and sympos == 0:
        raise ScenarioError(
            where,
            f"{func!r} is defined {count} times in {symbols.name}: "
            f"choose one with sympos = 1..{count}",
        )
    if sympos > count:
        raise ScenarioError(
            f"{where}.sympos",
            f"sympos {sympos} out of range: {func!r} is defined {count} time"
            f"{'s' if count > 1 else ''} in {symbols.name} (sympos = "
            f"{'1' if count == 1 else f'1..{count}'}, or 0 when unique)",
        )
    if func not in symbols.ftraceable:
        raise ScenarioError(
            where,
            f"{symbols.name}:{func} is not ftrace-able (notrace, or no ftrace call site), "
            "so livepatch cannot redirect it; patch a caller or a callee instead",
        )
