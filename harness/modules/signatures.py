"""A scenario's replacement bodies against the prototypes of the functions they replace.

A body is pasted into the livepatch module as written; livepatch then sends every call
of the original to it with the original's arguments, and returns its result to the
original's callers (kernel/livepatch/patch.c:klp_ftrace_handler only changes the
instruction pointer).  A body that takes other parameters reads garbage registers or
stack, and one that returns a value of another size leaves garbage in the caller: the
guest is corrupted, not the scenario refuted.  So after the livepatch module is built,
and before any guest, each body's prototype (the module's DWARF: harness.modules.dwarf)
is compared with the original's (harness.symbols.shapes says what is compared):

* vmlinux: the profile's vmlinux BTF, recorded once per profile from a guest
  (`/sys/kernel/btf/vmlinux`, harness.symbols.record).
* a module of the kernel: its `.ko`'s `.BTF`, split BTF on top of vmlinux's
  (CONFIG_DEBUG_INFO_BTF_MODULES, set on every profile).
* a generated target: the built target module's own DWARF.

A function BTF does not describe (pahole leaves out functions whose prototype differs
between compile units; a module without `.BTF`; a kernel built without
CONFIG_DEBUG_INFO_BTF) is not checked: nothing is
refused that cannot be compared.  A static name defined several times may have
several prototypes; a body matching any of them is accepted.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

from elftools.elf.elffile import ELFFile

from harness.errors import ScenarioError
from harness.host.inputs import KO_LIMIT, foreign, read_input
from harness.kernel.profiles import KernelProfile
from harness.modules import dwarf
from harness.scenario.types import VMLINUX, PatchObject, Scenario
from harness.symbols import btf
from harness.symbols.data import ELF_ERRORS
from harness.symbols.record import vmlinux_btf
from harness.symbols.shapes import Prototype, difference


def check_bodies(scenario: Scenario, profile: KernelProfile, modules: Mapping[str, Path]) -> None:
    """Refuse the first body whose prototype differs from its original's (one
    ScenarioError naming the body's field); `modules` maps names to built .ko files."""
    for i, patch in enumerate(scenario.patches):
        bodies = {
            (j, func): f"patch[{i}].object[{j}].funcs[{k}].body"
            for j, obj in enumerate(patch.objects)
            for k, func in enumerate(obj.funcs)
            if obj.spec(func).body is not None
        }
        if not bodies or patch.ko or patch.name not in modules:
            continue  # a module file the scenario brings is not built from its bodies
        names = {replacement_name(j, func) for j, func in bodies}
        replacements = dwarf.prototypes(modules[patch.name], names)
        for (j, func), where in bodies.items():
            obj = patch.objects[j]
            mine = replacements.get(replacement_name(j, func))
            originals = original_prototypes(scenario, obj, func, profile, modules)
            problem = _mismatch(originals, mine)
            if problem is not None:
                theirs, ours = problem
                raise ScenarioError(
                    where,
                    f"{func} {theirs} in {profile.name}'s {obj.name}, the body {ours}",
                    str(scenario.path),
                )


def replacement_name(object_index: int, func: str) -> str:
    """The body's function in the module: the template renames it by a #define
    (kmod_templates/livepatch.c.j2, harness.modules.render)."""
    return f"klp_harness_new_{object_index}_{func}"


def _mismatch(originals: list[Prototype], mine: Prototype | None) -> tuple[str, str] | None:
    """The first original's side and the body's, unless the body matches one of them
    (or there is nothing to compare)."""
    if not originals or mine is None:
        return None
    problems = [difference(original, mine) for original in originals]
    if any(problem is None for problem in problems):
        return None
    return problems[0]


def original_prototypes(
    scenario: Scenario,
    obj: PatchObject,
    func: str,
    profile: KernelProfile,
    modules: Mapping[str, Path],
) -> list[Prototype]:
    """What BTF (or a generated target's DWARF) says `func` of `obj` takes and returns."""
    if obj.name == VMLINUX:
        return btf.prototypes(vmlinux_types(profile), func)
    ko = modules.get(obj.name)
    if ko is None:
        return []
    if obj.name not in scenario.real_objects():  # a target: built here, with DWARF
        found = dwarf.prototypes(ko, {func}, required=False)
        return [found[func]] if func in found else []
    base, split = module_btf(ko)
    if split is None:
        return []
    with foreign(ko, "BTF"):
        on = vmlinux_types(profile) if base is None else btf.parse(base)
        return btf.prototypes(btf.parse(split, on), func)


_PARSED: dict[tuple[str, str], btf.Types] = {}


def vmlinux_types(profile: KernelProfile) -> btf.Types:
    """vmlinux's BTF, parsed once per process (about a second for a few MB)."""

    key = (profile.name, profile.release)
    if key not in _PARSED:
        blob = vmlinux_btf(profile)
        _PARSED[key] = btf.parse(blob) if blob else btf.Types()  # no BTF: nothing known
    return _PARSED[key]


def module_btf(ko: Path) -> tuple[bytes | None, bytes | None]:
    """A module's split BTF (`.BTF`) and the base it was made against when the module
    carries one (`.BTF.base`, a distilled base: kernels from 6.12 give it to modules
    built outside the tree); (None, None) without `.BTF`."""
    data = read_input(ko, KO_LIMIT, "module")
    with foreign(ko, "ELF file", ELF_ERRORS):
        elf = ELFFile(io.BytesIO(data))
        split, base = elf.get_section_by_name(".BTF"), elf.get_section_by_name(".BTF.base")
        return (
            None if base is None or split is None else bytes(base.data()),
            None if split is None else bytes(split.data()),
        )
