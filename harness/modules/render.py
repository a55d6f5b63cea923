"""Render module descriptions into kernel module C sources (Jinja, kmod_templates/).

Output is a pure function of the module description: no paths, dates or scenario names
end up in a source, so the same module described in two scenarios renders to the same
bytes and the build cache (keyed by source hash) builds it once.  Descriptions are
validated again here (cheap), so nothing reaches C unchecked even when a caller builds
the types by hand instead of going through the scenario loader.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from harness.errors import ScenarioError
from harness.scenario.checks import validate_modules
from harness.scenario.types import (
    VMLINUX,
    VMLINUX_FUNCS,
    Callback,
    Module,
    PatchModule,
    Scenario,
    ShadowOp,
    ShadowOpKind,
    TargetModule,
)

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "kmod_templates"
KBUILD = "Kbuild"


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _template(name: str) -> jinja2.Template:
    return _env().get_template(name)


def _shadow_context(ops: Sequence[ShadowOp]) -> dict[str, Any] | None:
    """Everything shadow.c.j2 needs: slot counts, which helpers to emit (an unused
    static function would be a warning), and per-op values already formatted."""
    if not ops:
        return None
    ids = sorted({op.id for op in ops})
    col = {ident: i for i, ident in enumerate(ids)}
    kinds = {op.kind for op in ops}
    allocs = sum(op.kind in (ShadowOpKind.ALLOC, ShadowOpKind.GET_OR_ALLOC) for op in ops)
    nobj = max((op.obj for op in ops), default=0)
    nctor = max((op.ctor_data for op in ops), default=0)
    rendered = []
    for op in ops:
        parts = [f"id=0x{op.id:x}"]
        if op.obj:
            parts.insert(0, f"obj={op.obj}")
        if op.ctor_data:
            parts.append(f"ctor_data={op.ctor_data}")
        if op.dtor:
            parts.append("dtor")
        rendered.append(
            {
                "kind": op.kind.value,
                "id": f"0x{op.id:x}",
                "o": op.obj - 1,
                "c": op.ctor_data - 1,
                "col": col[op.id],
                "dtor": op.dtor,
                "comment": f"{op.kind.value} {' '.join(parts)}",
            }
        )
    return {
        "ops": rendered,
        "ids": [f"0x{i:x}" for i in ids],
        "nobj": nobj,
        "nctor": nctor,
        # NULL, objects, ctor data, variables, ctor, dtor, and slack for other modules'
        # objects a free_all destructor may report.
        "nptrs": 1 + nobj + nctor + allocs + 2 + 8,
        # Flat keys: in Jinja `uses.get` would be dict.get, not a key.
        "use_get": ShadowOpKind.GET in kinds,
        "use_get_or_alloc": ShadowOpKind.GET_OR_ALLOC in kinds,
        "use_free": ShadowOpKind.FREE in kinds,
        "use_free_all": ShadowOpKind.FREE_ALL in kinds,
        "use_ctor": bool(kinds & {ShadowOpKind.ALLOC, ShadowOpKind.GET_OR_ALLOC}),
        "use_dtor": any(op.dtor for op in ops),
        "use_check": bool(kinds & {ShadowOpKind.GET, ShadowOpKind.GET_OR_ALLOC}),
    }


def render_target(target: TargetModule) -> str:
    """C source of a target module (assumes a validated description)."""
    return _template("target.c.j2").render(
        name=target.name,
        funcs=list(target.funcs),
        blocker=target.blocker,
        spinner=target.spinner,
        log_init_exit=target.log_init_exit,
        shadow=_shadow_context(target.shadow),
        kprobe=target.kprobe,
    )


def render_patch(
    patch: PatchModule,
    targets: Iterable[str] | None = None,
    spun: frozenset[tuple[str, str]] = frozenset(),
) -> str:
    """C source of a livepatch module (assumes a validated description).  `targets`
    names the generated targets; other module objects are modules of the kernel
    (None: every module object is a generated target).  `spun` lists the target
    functions a spinner thread spins inside: their replacement spins like the
    original (only those, so every other rendered source stays the same)."""
    generated = None if targets is None else set(targets)
    objects: list[dict[str, Any]] = []
    headers: dict[str, None] = {}
    park = False  # a target function keeps the parking default
    index = 0
    trampolines = False
    for j, obj in enumerate(patch.objects):
        vmlinux = obj.name == VMLINUX
        info: dict[str, dict[str, Any]] = {}
        for k, func in enumerate(obj.funcs):
            spec = obj.spec(func)
            body = spec.body
            # a real function without a body (not one whose file read shows its patch)
            trampoline = body is None and (
                (vmlinux and func not in VMLINUX_FUNCS)
                or (not vmlinux and generated is not None and obj.name not in generated)
            )
            trampolines = trampolines or trampoline
            park = park or (body is None and not vmlinux and not trampoline)
            new = f"klp_harness_new_{j}_{func}"  # index-qualified: two targets may share names
            code = None
            if body is not None:
                headers.update(dict.fromkeys(body.headers))
                code = counted_body(body.code, func, index, f"patch.object[{j}].funcs[{k}]")
            info[func] = {
                "new": new,
                "index": index,
                "sympos": spec.sympos,
                "body": body,
                "code": code,
                "trampoline": trampoline,
                "spin": (obj.name, func) in spun,
            }
            index += 1
        objects.append(
            {
                "name": obj.name,
                "vmlinux": vmlinux,
                "funcs": list(obj.funcs),
                "info": info,
                "proc": VMLINUX_FUNCS,
                "callbacks": [cb.value for cb in Callback if cb in obj.callbacks],
                "field": None if obj.shadow_field is None else f"0x{obj.shadow_field:x}",
                "relocs": obj.klp_relocs,
            }
        )
    used = {cb for obj in patch.objects for cb in obj.callbacks}
    text = _template("livepatch.c.j2").render(
        name=patch.name,
        replace=int(patch.replace),
        pre_patch_ret=patch.pre_patch_ret,
        objects=objects,
        callbacks=[cb.value for cb in Callback if cb in used],
        states=list(patch.states),
        uses_park=park,
        headers=list(headers),
        nfuncs=index,
        nslots=max(index, 1),
        trampolines=trampolines,
        shadow=_shadow_context(patch.shadow),
        fields=any(obj.shadow_field is not None for obj in patch.objects),
        relocs=any(obj.klp_relocs for obj in patch.objects),
    )
    return restore_lines(text, f"{patch.name}.c")


def counted_body(code: str, func: str, index: int, where: str) -> str:
    """A scenario's definition of `func` with a call count as its first statement,
    inserted on the line of the opening brace so every line keeps its number."""
    match = re.search(rf"\b{re.escape(func)}\s*\(", code)
    if match is None:
        raise ScenarioError(
            f"{where}.body", f"defines no {func}(...): write the function under its own name"
        )
    depth, pos = 1, match.end()
    while pos < len(code) and depth:
        depth += {"(": 1, ")": -1}.get(code[pos], 0)
        pos += 1
    brace = code.find("{", pos)
    if depth or brace < 0:
        raise ScenarioError(f"{where}.body", f"{func}(...) has no body in braces")
    count = f" atomic_long_inc(&klp_harness_calls[{index}]);"
    return code[: brace + 1] + count + code[brace + 1 :].rstrip("\n")


_RESTORE = "#line KLP_HARNESS_RESTORE"


def restore_lines(text: str, file: str) -> str:
    """After a scenario's body, line numbers are the generated file's again."""
    if _RESTORE not in text:
        return text
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if line == _RESTORE:
            lines[number - 1] = f'#line {number + 1} "{file}"'
    return "\n".join(lines)


def render_kbuild(names: Iterable[str]) -> str:
    return _template("Kbuild.j2").render(names=sorted(names))


def render_module(
    module: Module,
    targets: Iterable[str] | None = None,
    spun: frozenset[tuple[str, str]] = frozenset(),
) -> str:
    if isinstance(module, PatchModule):
        return render_patch(module, targets, spun)
    return render_target(module)


def _split(modules: Iterable[Module]) -> tuple[list[TargetModule], list[PatchModule]]:
    targets: list[TargetModule] = []
    patches: list[PatchModule] = []
    for module in modules:
        if isinstance(module, PatchModule):
            patches.append(module)
        else:
            targets.append(module)
    return targets, patches


def render_sources(
    modules: Scenario | Sequence[Module], context: Sequence[TargetModule] = ()
) -> dict[str, str]:
    """{module name: C source} for the given modules, validated first.

    `context` lists further targets the patches may refer to without being rendered
    (a scenario's targets when only its patches are wanted)."""
    if isinstance(modules, Scenario):
        modules = modules.modules
    targets, patches = _split(modules)
    known = {t.name for t in targets}
    validate_modules([*targets, *(t for t in context if t.name not in known)], patches)
    # a module file's functions are real functions (any signature): not a generated
    # target's, whose replacements return a line of text
    names = {t.name for t in targets if not t.ko} | {t.name for t in context if not t.ko}
    spun = frozenset(
        (t.name, t.spinner.func) for t in [*targets, *context] if t.spinner and t.spinner.inside
    )
    # module files (`ko`) are read, not generated: named, never rendered
    return {m.name: render_module(m, names, spun) for m in modules if not m.ko}


def write_sources(sources: dict[str, str], out_dir: Path) -> dict[str, Path]:
    """Write `<name>.c` per module plus a Kbuild building all of them; return the
    .c paths.  Files of the directory that are not ours are left alone."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, text in sorted(sources.items()):
        path = out_dir / f"{name}.c"
        _write_if_changed(path, text)
        paths[name] = path
    _write_if_changed(out_dir / KBUILD, render_kbuild(sources))
    return paths


def _write_if_changed(path: Path, text: str) -> None:
    """Unchanged files keep their mtime, so re-rendering does not make make rebuild."""
    if path.is_file() and path.read_text() == text:
        return
    path.write_text(text)


def render_modules(modules: Scenario | Sequence[Module], out_dir: Path) -> dict[str, Path]:
    """Render a scenario's (or a list of) modules into `out_dir`: `<name>.c` + Kbuild."""
    return write_sources(render_sources(modules), out_dir)
