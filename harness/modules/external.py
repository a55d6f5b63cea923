"""Modules the harness did not write: checked before any guest, their structure fed
to the same types (and so the same model) as generated modules.

A scenario names one with `ko = "..."` on a `[[patch]]` or `[[target]]`: a path
relative to the scenario file, or `samples:<name>` for the profile's build of the
kernel's own `samples/livepatch/<name>.c`, which the caller locates
(`SampleLocator`: harness.upstream.samples builds them through this layer's build).
Checks, each one line and exit 2: the file exists; it is a 64-bit x86_64 relocatable ELF that parses
(`harness.modules.elf`); its vermagic is the profile's (both shown); a patch carries
`livepatch=Y`.  A patch's objects, funcs, callbacks, states and `replace` then come
from its static `klp_patch` (`harness.modules.elf.read_patch`), or from the sections a
kpatch-build or klp-build module builds its klp_patch from at load time
(`harness.modules.patch_formats` chooses the reader).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError, UsageError
from harness.host.inputs import KO_LIMIT, read_input
from harness.kernel.profiles import KernelProfile
from harness.modules import klprela
from harness.modules.elf import BadKo, KoFile, KoPatch
from harness.modules.ko import BadModule, read_modinfo
from harness.modules.layout import layout_for
from harness.modules.patch_formats import read_patch
from harness.scenario.external import PatchStructure
from harness.scenario.loader import resolve_for
from harness.scenario.types import VMLINUX, FuncSpec, KlpState, PatchObject, Scenario
from harness.symbols.data import module_symbols

SAMPLES_PREFIX = "samples:"
SampleLocator = Callable[[str], Path]  # a sample's file name -> its built .ko


@dataclass(frozen=True)
class ExternalModule:
    """A checked module file: its name (KBUILD_MODNAME, from modinfo) and path."""

    name: str
    path: Path
    livepatch: bool


def locate(ref: str, scenario_dir: Path, samples: SampleLocator) -> Path:
    """The file a `ko` value names (`samples`: where the profile's samples are)."""
    if ref.startswith(SAMPLES_PREFIX):
        return samples(ref.removeprefix(SAMPLES_PREFIX))
    path = Path(ref)
    return path if path.is_absolute() else scenario_dir / path


def module_name_of(ref: str, scenario_dir: Path) -> str:
    """The module name a `ko` value stands for, known without a profile: a sample's
    file name with `-` as `_` (what kbuild makes KBUILD_MODNAME), a file's modinfo."""
    if ref.startswith(SAMPLES_PREFIX):
        return ref.removeprefix(SAMPLES_PREFIX).replace("-", "_")
    path = Path(ref) if Path(ref).is_absolute() else scenario_dir / ref
    return _modinfo_name(path, modinfo_of(path))


def check_file(path: Path, profile: KernelProfile, livepatch: bool) -> ExternalModule:
    """Refuse, with one line, a file the profile's kernel would not load as intended."""
    if not path.exists():
        raise BadKo(f"{path}: no such module file")
    KoFile(path, read_input(path, KO_LIMIT, "module"))  # a regular file, x86_64 ELF, a symtab
    info = modinfo_of(path)
    name = _modinfo_name(path, info)
    vermagic = " ".join(info.get("vermagic", [""])[0].split())
    if vermagic != profile.vermagic:
        raise BadKo(f"{path}: vermagic {vermagic!r} is not {profile.name}'s {profile.vermagic!r}")
    if livepatch and info.get("livepatch") != ["Y"]:
        raise BadKo(f"{path}: not a livepatch module (no `livepatch=Y` in its modinfo)")
    return ExternalModule(name, path, livepatch)


def modinfo_of(path: Path) -> dict[str, list[str]]:
    try:
        return read_modinfo(path)
    except BadModule as exc:
        raise BadKo(str(exc)) from None
    except OSError as exc:
        raise BadKo(f"{path}: {exc.strerror}") from None


def _modinfo_name(path: Path, info: dict[str, list[str]]) -> str:
    names = info.get("name", [])
    if not names:
        raise BadKo(f"{path}: no module name in its modinfo (not a built kernel module)")
    return names[0]


def patch_structure(module: ExternalModule, profile: KernelProfile) -> KoPatch:
    try:
        return read_patch(module.path, layout_for(profile))
    except BadKo:
        raise
    except HarnessError as exc:  # the layout probe did not build
        raise HarnessError(f"{module.path}: cannot read its structure: {exc}") from None


def scenario_objects(
    patch: KoPatch, relocated: frozenset[str] = frozenset()
) -> tuple[PatchObject, ...]:
    """The file's objects as the scenario types say them (NULL name: vmlinux);
    `relocated` names the module objects its klp relocation sections write into
    (the model follows when they are written and cleared: harness/model/kernel/relocs.py)."""
    objects = []
    for obj in patch.objects:
        funcs = tuple(f.name for f in obj.funcs)
        specs = tuple(FuncSpec(f.name, f.sympos, new_func=f.new_func) for f in obj.funcs)
        name = obj.name or VMLINUX
        relocs = name != VMLINUX and name in relocated
        objects.append(PatchObject(name, funcs, obj.callbacks, specs, klp_relocs=relocs))
    return tuple(objects)


def scenario_states(patch: KoPatch) -> tuple[KlpState, ...]:
    return tuple(KlpState(state_id, version) for state_id, version in patch.states)


class ModuleFiles:
    """What a `ko` value names, read from the file without a profile
    (harness.scenario.external.ModuleNames)."""

    def module_name(self, ref: str, base: Path) -> str:
        return module_name_of(ref, base)


class ProfileResolver(ModuleFiles):
    """`ko` values resolved for one profile (harness.scenario.external.Resolver)."""

    def __init__(self, profile: KernelProfile, samples: SampleLocator) -> None:
        self.profile = profile
        self.samples = samples

    def locate(self, ref: str, base: Path) -> Path:
        return locate(ref, base, self.samples)

    def module_file(self, ref: str, base: Path, livepatch: bool) -> tuple[str, Path]:
        module = check_file(self.locate(ref, base), self.profile, livepatch)
        return module.name, module.path

    def functions(self, path: Path) -> tuple[str, ...]:
        return module_symbols(path).functions

    def structure(self, path: Path) -> PatchStructure:
        patch = patch_structure(ExternalModule(path.stem, path, True), self.profile)
        relocated = frozenset(section.objname for section in klprela.read(path))
        objects = scenario_objects(patch, relocated)
        return PatchStructure(objects, scenario_states(patch), patch.replace)


def resolve_scenario(
    scenario: Scenario, profile: KernelProfile, samples: SampleLocator
) -> tuple[Scenario, dict[str, Path]]:
    """`scenario` as it runs on `profile`: its module files checked and read, and
    {module name: file} of them (empty for a scenario of generated modules only)."""
    if scenario.resolved_for:
        if scenario.resolved_for != profile.name:
            raise UsageError(
                f"{scenario.name}: made for {scenario.resolved_for}, not {profile.name}"
            )
        return scenario, dict(scenario.files)
    return resolve_for(scenario, ProfileResolver(profile, samples))
