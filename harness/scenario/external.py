"""`[[patch]]` and `[[target]]` tables that name an existing module file (`ko = ...`).

Such a table says only what the file cannot: for a patch, whether its callbacks log
upstream's `callback_info()` lines (`callback_lines`); for a target, whether it logs
`<name>_init` / `<name>_exit` (`log_init_exit`).  Everything else comes from the
file, which depends on the profile (`samples:NAME` is each profile's own build; the
struct layouts are the profile's).  The scenario layer reads no module file itself:
the modules layer supplies what it knows of them (harness.modules.external), as
`ModuleNames` (the name a `ko` value stands for, without a profile: enough to list,
shard and collect a scenario) and as a `Resolver` for one profile (files checked,
structure read), which `harness.scenario.loader.resolve_for` applies to the
scenario's text as it was read, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.errors import ScenarioError, UsageError
from harness.scenario.toml_fields import as_bool
from harness.scenario.types import (
    Blocker,
    KlpState,
    PatchModule,
    PatchObject,
    TargetModule,
)

PATCH_KO_KEYS = {"name", "ko", "callback_lines", "check"}
TARGET_KO_KEYS = {"name", "ko", "log_init_exit", "blocker", "blocker_param"}


@dataclass(frozen=True)
class PatchStructure:
    """What the file of a livepatch says about its `struct klp_patch`."""

    objects: tuple[PatchObject, ...]
    states: tuple[KlpState, ...]
    replace: bool


class ModuleNames(Protocol):
    """The module name a `ko` value stands for, known without a profile."""

    def module_name(self, ref: str, base: Path) -> str: ...


def kbuild_name(ref: str) -> str:
    """The name kbuild gives a module built from `ref`'s file name (KBUILD_MODNAME:
    `-` as `_`): what a scenario read without `ModuleNames` assumes."""
    stem = ref.removeprefix("samples:")
    return Path(stem).name.removesuffix(".ko").replace("-", "_")


class Resolver(ModuleNames, Protocol):
    """Checks the files of one profile and reads their structure."""

    def module_file(self, ref: str, base: Path, livepatch: bool) -> tuple[str, Path]:
        """(module name, checked file) of a `ko` value."""
        ...

    def structure(self, path: Path) -> PatchStructure: ...

    def functions(self, path: Path) -> tuple[str, ...]:
        """The module's function symbols in the order its kallsyms lists them."""
        ...


@dataclass
class ExternalContext:
    """Where `ko` values are relative to, what names them, and the resolver (None:
    not resolved for a profile)."""

    base: Path
    resolver: Resolver | None = None
    names: ModuleNames | None = None
    files: dict[str, Path] = field(default_factory=dict)  # module name -> file


def _flag(table: dict[str, Any], key: str, where: str, default: bool) -> bool:
    return as_bool(table.get(key, default), f"{where}.{key}")


def _ref(table: dict[str, Any], where: str) -> str:
    ref = table["ko"]
    if not isinstance(ref, str) or not ref.strip():
        raise ScenarioError(f"{where}.ko", "expected a module file (path or samples:NAME)")
    return ref


def _unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ScenarioError(
                f"{where}.{key}",
                f"{key!r} comes from the module file given by `ko` "
                f"(with ko, allowed: {', '.join(sorted(allowed))})",
            )


def _name(
    table: dict[str, Any], ref: str, where: str, ctx: ExternalContext, livepatch: bool
) -> tuple[str, Path | None]:
    """The module's name (and checked file when resolving); `name`, if given, must
    be the file's own (what the kernel will call it)."""
    try:
        if ctx.resolver is None:
            name = ctx.names.module_name(ref, ctx.base) if ctx.names else kbuild_name(ref)
            path = None
        else:
            name, found = ctx.resolver.module_file(ref, ctx.base, livepatch)
            path = found
    except UsageError as exc:
        raise ScenarioError(f"{where}.ko", str(exc)) from None
    given = table.get("name", name)
    if given != name:
        raise ScenarioError(f"{where}.name", f"{given!r}: the module in {ref} is named {name!r}")
    if path is not None:
        ctx.files[name] = path
    return name, path


def check_command(table: dict[str, Any], where: str) -> str:
    """A patch's `check`: a non-empty guest command line (kpatch's LOADED test)."""
    check = table.get("check", "")
    if not isinstance(check, str) or ("check" in table and not check.strip()):
        raise ScenarioError(f"{where}.check", f"expected a guest command, got {check!r}")
    return check


def external_patch(table: dict[str, Any], where: str, ctx: ExternalContext) -> PatchModule:
    _unknown(table, PATCH_KO_KEYS, where)
    ref = _ref(table, where)
    name, path = _name(table, ref, where, ctx, livepatch=True)
    callback_lines = _flag(table, "callback_lines", where, False)
    check = check_command(table, where)
    if ctx.resolver is None or path is None:
        return PatchModule(
            name, (), ko=ref, resolved=False, callback_lines=callback_lines, check=check
        )
    try:
        structure = ctx.resolver.structure(path)
    except UsageError as exc:
        raise ScenarioError(f"{where}.ko", str(exc)) from None
    return PatchModule(
        name,
        structure.objects,
        replace=structure.replace,
        states=structure.states,
        ko=ref,
        callback_lines=callback_lines,
        check=check,
    )


def external_target(table: dict[str, Any], where: str, ctx: ExternalContext) -> TargetModule:
    _unknown(table, TARGET_KO_KEYS, where)
    ref = _ref(table, where)
    name, path = _name(table, ref, where, ctx, livepatch=False)
    log = _flag(table, "log_init_exit", where, False)
    symbols = ctx.resolver.functions(path) if ctx.resolver and path else ()
    blocker = _timed_blocker(table, where, symbols if path else None)
    return TargetModule(name, blocker=blocker, log_init_exit=log, ko=ref, symbols=symbols)


def _timed_blocker(
    table: dict[str, Any], where: str, symbols: tuple[str, ...] | None
) -> Blocker | None:
    """`blocker = FUNC, blocker_param = PARAM`: the module's work sleeps PARAM
    seconds in FUNC (types.Blocker.timed); FUNC must be one of the file's functions."""
    if "blocker" not in table:
        if "blocker_param" in table:
            raise ScenarioError(f"{where}.blocker_param", "given without a blocker")
        return None
    func, param = table["blocker"], table.get("blocker_param")
    if not isinstance(func, str) or not isinstance(param, str):
        raise ScenarioError(
            f"{where}.blocker",
            "a module file's blocker is a function name with blocker_param naming its "
            "parameter of seconds to sleep in it",
        )
    if symbols is not None and func not in symbols:
        raise ScenarioError(f"{where}.blocker", f"the module file has no function {func!r}")
    return Blocker(func, param, timed=True)
