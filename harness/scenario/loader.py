"""Scenario files (TOML) -> validated `harness.scenario.types.Scenario`.

Validation happens here, before anything is built or booted, and every problem is one
`ScenarioError` that prints as `<file>: <where>: <message>`, `where` being the path of
the offending field as the file spells it (`patch[1].object[0].funcs`, `steps[3]`) or
the line of a syntax error.  The loader owns the TOML-level checks (syntax, unknown
keys, types, required keys, step strings); the C-safety rules of module descriptions
live in `harness.scenario.checks`, which it calls once the types are built.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.errors import ScenarioError, UsageError
from harness.host.inputs import BODY_LIMIT, SCENARIO_LIMIT, read_input_text
from harness.kernel.profiles import profile_names
from harness.scenario.actors import parse_processes
from harness.scenario.bpf import check_attachments, parse_bpf
from harness.scenario.checks import validate_modules
from harness.scenario.cpus import DEFAULT_CPUS, check_spinner_cpus, parse_cpus, parse_spinner_cpu
from harness.scenario.external import (
    ExternalContext,
    ModuleNames,
    Resolver,
    check_command,
    external_patch,
    external_target,
)
from harness.scenario.steps import parse_steps
from harness.scenario.toml_fields import (
    as_bool,
    as_int,
    as_list,
    as_str,
    as_str_list,
    as_tables,
    check_keys,
    kind,
    required,
)
from harness.scenario.types import (
    Blocker,
    Callback,
    FuncBody,
    FuncSpec,
    KlpState,
    Kprobe,
    PatchModule,
    PatchObject,
    Scenario,
    ShadowOp,
    ShadowOpKind,
    Spinner,
    TargetModule,
)

TOP_KEYS = {
    "description", "links", "kernels", "steps", "target", "patch", "processes", "bpf", "cpus"
}  # fmt: skip
TARGET_KEYS = {
    *("name", "funcs", "blocker", "blocker_param", "log_init_exit", "shadow", "kprobe", "ko"),
    "spinner",
}
KPROBE_KEYS = {"func", "post_handler", "kretprobe", "body"}
SPINNER_KEYS = {"func", "inside", "cond_resched", "rcu_tasks_qs", "cpu"}
PATCH_KEYS = {"name", "replace", "pre_patch_ret", "states", "object", "shadow", "check"}
OBJECT_KEYS = {"name", "funcs", "callbacks", "shadow_field", "klp_relocs"}
FUNC_KEYS = {"name", "sympos", "body", "file", "headers"}
STATE_KEYS = {"id", "version"}
SHADOW_KEYS = {"op", "id", "obj", "ctor_data", "dtor"}

_TOML_POSITION = re.compile(r"^(?P<msg>.*?) ?\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def load_scenario(path: str | Path, names: ModuleNames | None = None) -> Scenario:
    """Read and validate one scenario file; `names` says what module a `ko` value
    stands for (harness.scenario.external; kbuild's file-name rule without it)."""
    path = Path(path)
    return _in_file(path, lambda: _load(path, ExternalContext(path.parent, names=names)))


def load_scenarios(paths: Iterable[str | Path], names: ModuleNames | None = None) -> list[Scenario]:
    """Load every scenario named; a directory stands for its **/*.toml, sorted."""
    scenarios: list[Scenario] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(path.rglob("*.toml"))
            if not files:
                raise ScenarioError("directory", "contains no *.toml scenario", str(path))
            scenarios.extend(load_scenario(f, names) for f in files)
        else:
            scenarios.append(load_scenario(path, names))
    return scenarios


def resolve_for(scenario: Scenario, resolver: Resolver) -> tuple[Scenario, dict[str, Path]]:
    """The scenario with its external modules read for one profile, and their files:
    its text as it was read, built again with the profile's facts (the file is not
    read again: what was listed is what runs)."""
    if not scenario.external:
        return scenario, {}
    ctx = ExternalContext(scenario.path.parent, resolver)
    data = _parse(scenario.text)
    resolved = _in_file(scenario.path, lambda: _scenario(scenario.path, data, scenario.text, ctx))
    return resolved, ctx.files


def _in_file(path: Path, read: Callable[[], Scenario]) -> Scenario:
    """`read()`, its errors said as the file's."""
    try:
        return read()
    except ScenarioError as exc:
        if exc.path is not None:
            raise
        raise exc.in_file(str(path)) from None
    except RecursionError:  # tomllib (and repr) recurse per level: a 5000-deep array
        raise ScenarioError("file", "nested too deeply to read", str(path)) from None


def _parse(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(exc) from None


def _load(path: Path, external: ExternalContext) -> Scenario:
    """A scenario file: a regular file of at most SCENARIO_LIMIT bytes, checked
    before it is read (a FIFO or a device is refused, not read)."""
    if not path.exists():
        raise ScenarioError("file", "does not exist")
    try:
        text = read_input_text(path, SCENARIO_LIMIT, "scenario")
    except UsageError as exc:
        raise ScenarioError("file", str(exc).removeprefix(f"{path}: ")) from None
    return _scenario(path, _parse(text), text, external)


def _syntax_error(exc: tomllib.TOMLDecodeError) -> ScenarioError:
    message = str(exc)
    match = _TOML_POSITION.match(message)
    if match:
        where = f"line {match['line']}, column {match['col']}"
        message = match["msg"]
    else:
        where = "syntax"
    return ScenarioError(where, f"TOML syntax error: {message}")


# ---- building the types --------------------------------------------------------------------


def _scenario(
    path: Path, data: dict[str, Any], text: str = "", external: ExternalContext | None = None
) -> Scenario:
    ext = external or ExternalContext(path.parent)
    check_keys(data, TOP_KEYS, "")
    description = as_str(required(data, "description", ""), "description").strip()
    if not description:
        raise ScenarioError("description", "is empty: say what the scenario checks")
    links = as_str_list(data.get("links", []), "links")
    kernels = as_str_list(data.get("kernels", []), "kernels")
    known = profile_names()
    for i, kernel in enumerate(kernels):
        if kernel not in known:
            raise ScenarioError(
                f"kernels[{i}]", f"unknown profile {kernel!r} (known: {', '.join(known)})"
            )
    targets = tuple(
        external_target(t, f"target[{i}]", ext) if "ko" in t else _target(t, f"target[{i}]")
        for i, t in enumerate(as_tables(data.get("target", []), "target", "[[target]]"))
    )
    bodies = _BodyPlaces(path, text)
    patches = tuple(
        external_patch(p, f"patch[{i}]", ext) if "ko" in p else _patch(p, f"patch[{i}]", bodies)
        for i, p in enumerate(as_tables(data.get("patch", []), "patch", "[[patch]]"))
    )
    validate_modules(targets, patches)
    cpus = parse_cpus(data.get("cpus", DEFAULT_CPUS))
    check_spinner_cpus(targets, cpus)
    processes = parse_processes(as_tables(data.get("processes", []), "processes", "[[processes]]"))
    step_texts = as_str_list(required(data, "steps", ""), "steps")
    if not step_texts:
        raise ScenarioError("steps", "is empty: a scenario needs at least one step")
    bpf = parse_bpf(as_tables(data.get("bpf", []), "bpf", "[[bpf]]"))
    steps = parse_steps(list(step_texts), targets, patches, processes, bpf)
    check_attachments(steps)
    return Scenario(
        path=path,
        description=description,
        steps=steps,
        targets=targets,
        patches=patches,
        kernels=kernels,
        links=links,
        processes=processes,
        bpf=bpf,
        cpus=cpus,
        text=text,
    )


def _target(table: dict[str, Any], where: str) -> TargetModule:
    check_keys(table, TARGET_KEYS, where)
    name = as_str(required(table, "name", where), f"{where}.name")
    funcs = as_str_list(table.get("funcs", []), f"{where}.funcs")
    blocker = None
    if "blocker" in table:
        func = as_str(table["blocker"], f"{where}.blocker")
        param = as_str(table.get("blocker_param", "block_transition"), f"{where}.blocker_param")
        blocker = Blocker(func, param)
    elif "blocker_param" in table:
        raise ScenarioError(f"{where}.blocker_param", "given without a blocker")
    return TargetModule(
        name=name,
        funcs=funcs,
        blocker=blocker,
        spinner=_spinner(table["spinner"], f"{where}.spinner") if "spinner" in table else None,
        log_init_exit=as_bool(table.get("log_init_exit", True), f"{where}.log_init_exit"),
        shadow=_shadow(table.get("shadow", []), f"{where}.shadow"),
        kprobe=_kprobe(table["kprobe"], f"{where}.kprobe") if "kprobe" in table else None,
    )


def _kprobe(value: Any, where: str) -> Kprobe:
    """`kprobe = { func = "cmdline_proc_show", post_handler = true }`."""
    if not isinstance(value, dict):
        raise ScenarioError(where, f"expected a table {{ func = ... }}, got {kind(value)}")
    check_keys(value, KPROBE_KEYS, where)
    kretprobe = as_bool(value.get("kretprobe", False), f"{where}.kretprobe")
    if kretprobe and "post_handler" in value:
        raise ScenarioError(f"{where}.post_handler", "a kretprobe has no post_handler")
    body = as_bool(value.get("body", False), f"{where}.body")
    if kretprobe and body:
        raise ScenarioError(f"{where}.body", "a kretprobe goes on the function's entry")
    return Kprobe(
        func=as_str(required(value, "func", where), f"{where}.func"),
        post_handler=not kretprobe
        and as_bool(value.get("post_handler", True), f"{where}.post_handler"),
        kretprobe=kretprobe,
        body=body,
    )


def _spinner(table: Any, where: str) -> Spinner:
    if not isinstance(table, dict):
        raise ScenarioError(where, "expected a table { func = ..., inside = ..., ... }")
    check_keys(table, SPINNER_KEYS, where)
    return Spinner(
        func=as_str(required(table, "func", where), f"{where}.func"),
        inside=as_bool(table.get("inside", False), f"{where}.inside"),
        cond_resched=as_bool(table.get("cond_resched", True), f"{where}.cond_resched"),
        rcu_tasks_qs=as_bool(table.get("rcu_tasks_qs", False), f"{where}.rcu_tasks_qs"),
        cpu=parse_spinner_cpu(table["cpu"], f"{where}.cpu") if "cpu" in table else None,
    )


def _patch(table: dict[str, Any], where: str, bodies: _BodyPlaces) -> PatchModule:
    check_keys(table, PATCH_KEYS, where)
    name = as_str(required(table, "name", where), f"{where}.name")
    objects = as_tables(required(table, "object", where), f"{where}.object", "[[patch.object]]")
    if not objects:
        raise ScenarioError(f"{where}.object", "a patch needs at least one [[patch.object]]")
    states = tuple(
        _state(s, f"{where}.states[{i}]")
        for i, s in enumerate(
            as_tables(table.get("states", []), f"{where}.states", "{ id = N, version = N }")
        )
    )
    return PatchModule(
        name=name,
        objects=tuple(_object(o, f"{where}.object[{i}]", bodies) for i, o in enumerate(objects)),
        replace=as_bool(table.get("replace", False), f"{where}.replace"),
        pre_patch_ret=as_int(table.get("pre_patch_ret", 0), f"{where}.pre_patch_ret"),
        states=states,
        shadow=_shadow(table.get("shadow", []), f"{where}.shadow"),
        check=check_command(table, where),
    )


def _object(table: dict[str, Any], where: str, bodies: _BodyPlaces) -> PatchObject:
    check_keys(table, OBJECT_KEYS, where)
    name = as_str(required(table, "name", where), f"{where}.name")
    funcs: list[str] = []
    specs: list[FuncSpec] = []
    for i, item in enumerate(as_list(table.get("funcs", []), f"{where}.funcs")):
        fwhere = f"{where}.funcs[{i}]"
        if isinstance(item, dict):
            spec = _func(item, fwhere, bodies)
            specs.append(spec)
            funcs.append(spec.name)
        else:
            funcs.append(as_str(item, fwhere))
    callbacks = _callbacks(table.get("callbacks", []), f"{where}.callbacks")
    field = None
    if "shadow_field" in table:
        field = as_int(table["shadow_field"], f"{where}.shadow_field")
    relocs = as_bool(table.get("klp_relocs", False), f"{where}.klp_relocs")
    return PatchObject(name, tuple(funcs), callbacks, tuple(specs), field, relocs)


def _func(table: dict[str, Any], where: str, bodies: _BodyPlaces) -> FuncSpec:
    """`{ name = "f", sympos = 2, body = "...", headers = [...] }` or `file = "f.c"`."""
    check_keys(table, FUNC_KEYS, where)
    name = as_str(required(table, "name", where), f"{where}.name")
    sympos = as_int(table.get("sympos", 0), f"{where}.sympos")
    headers = as_str_list(table.get("headers", []), f"{where}.headers")
    body = None
    if "body" in table and "file" in table:
        raise ScenarioError(f"{where}.file", "give either body or file, not both")
    if "body" in table:
        code = as_str(table["body"], f"{where}.body")
        file, line = bodies.inline(code)
        body = FuncBody(code, file, line, headers)
    elif "file" in table:
        body = bodies.from_file(as_str(table["file"], f"{where}.file"), f"{where}.file", headers)
    elif headers:
        raise ScenarioError(f"{where}.headers", "headers are for a body: give body or file")
    return FuncSpec(name, sympos, body)


class _BodyPlaces:
    """Where the bodies of a scenario file are written: an inline body's first line
    is found in the file's text (the n-th body with the same first line is its n-th
    occurrence), a file body is read from beside the scenario."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.used: dict[str, int] = {}

    def inline(self, code: str) -> tuple[str, int]:
        """The file and the line where `code`'s first line is written."""
        stripped = code.lstrip("\n")
        blank = len(code) - len(stripped)  # lines before the first non-empty one
        first = stripped.splitlines()[0] if stripped.strip() else ""
        wanted = self.used.get(first, 0)
        seen = 0
        for number, line in enumerate(self.lines, start=1):
            if first and first in line:
                if seen == wanted:
                    self.used[first] = wanted + 1
                    return str(self.path), max(1, number - blank)
                seen += 1
        return str(self.path), 1

    def from_file(self, name: str, where: str, headers: tuple[str, ...]) -> FuncBody:
        path = self.path.parent / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ScenarioError(where, f"{name!r}: a body file sits beside the scenario")
        try:
            code = read_input_text(path, BODY_LIMIT, "body file")
        except UsageError as exc:
            raise ScenarioError(where, f"{name!r}: {str(exc).removeprefix(f'{path}: ')}") from None
        return FuncBody(code, str(path), 1, headers)


def _callbacks(value: Any, where: str) -> frozenset[Callback]:
    if value == "all":
        return frozenset(Callback)
    if isinstance(value, str):
        raise ScenarioError(where, f'expected "all" or a list of callbacks, got {value!r}')
    known = {cb.value: cb for cb in Callback}
    chosen: set[Callback] = set()
    for i, name in enumerate(as_str_list(value, where)):
        if name not in known:
            raise ScenarioError(
                f"{where}[{i}]", f"unknown callback {name!r} (known: {', '.join(known)})"
            )
        if known[name] in chosen:
            raise ScenarioError(f"{where}[{i}]", f"callback {name!r} listed twice")
        chosen.add(known[name])
    return frozenset(chosen)


def _state(table: dict[str, Any], where: str) -> KlpState:
    check_keys(table, STATE_KEYS, where)
    return KlpState(
        id=as_int(required(table, "id", where), f"{where}.id"),
        version=as_int(required(table, "version", where), f"{where}.version"),
    )


def _shadow(value: Any, where: str) -> tuple[ShadowOp, ...]:
    ops: list[ShadowOp] = []
    kinds = {kind.value: kind for kind in ShadowOpKind}
    for i, table in enumerate(as_tables(value, where, "{ op = ..., id = ... }")):
        owhere = f"{where}[{i}]"
        check_keys(table, SHADOW_KEYS, owhere)
        op = as_str(required(table, "op", owhere), f"{owhere}.op")
        if op not in kinds:
            raise ScenarioError(
                f"{owhere}.op", f"unknown shadow op {op!r} (known: {', '.join(kinds)})"
            )
        ops.append(
            ShadowOp(
                kind=kinds[op],
                id=as_int(required(table, "id", owhere), f"{owhere}.id"),
                obj=as_int(table.get("obj", 0), f"{owhere}.obj"),
                ctor_data=as_int(table.get("ctor_data", 0), f"{owhere}.ctor_data"),
                dtor=as_bool(table.get("dtor", False), f"{owhere}.dtor"),
            )
        )
    return tuple(ops)


def scenario_paths(paths: Sequence[str | Path]) -> list[Path]:
    """The files `load_scenarios` would read, without reading them."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        files.extend(sorted(path.rglob("*.toml")) if path.is_dir() else [path])
    return files
