"""Render module descriptions into kernel module C sources (Jinja, kmod_templates/).

Output is a pure function of the module description: no paths, dates or scenario names
end up in a source, so the same module described in two scenarios renders to the same
bytes and the build cache (keyed by source hash) builds it once.  Descriptions are
validated again here (cheap), so nothing reaches C unchecked even when a caller builds
the types by hand instead of going through the scenario loader.
"""

from __future__ import annotations

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
        log_init_exit=target.log_init_exit,
        shadow=_shadow_context(target.shadow),
    )


def render_patch(patch: PatchModule) -> str:
    """C source of a livepatch module (assumes a validated description)."""
    objects = []
    for j, obj in enumerate(patch.objects):
        for func in obj.funcs:
            if obj.name == VMLINUX and func not in VMLINUX_FUNCS:
                raise ScenarioError(
                    "funcs", f"{func}: a replacement of a real function needs a body"
                )
        vmlinux = obj.name == VMLINUX
        objects.append(
            {
                "name": obj.name,
                "vmlinux": vmlinux,
                "funcs": list(obj.funcs),
                # Index-qualified: two targets may both define `alpha`.
                "new": {f: f"klp_harness_new_{j}_{f}" for f in obj.funcs},
                "proc": VMLINUX_FUNCS,
                "callbacks": [cb.value for cb in Callback if cb in obj.callbacks],
            }
        )
    used = {cb for obj in patch.objects for cb in obj.callbacks}
    return _template("livepatch.c.j2").render(
        name=patch.name,
        replace=int(patch.replace),
        pre_patch_ret=patch.pre_patch_ret,
        objects=objects,
        callbacks=[cb.value for cb in Callback if cb in used],
        states=list(patch.states),
        uses_park=any(o.funcs and o.name != VMLINUX for o in patch.objects),
        uses_seq=any(o.funcs and o.name == VMLINUX for o in patch.objects),
        shadow=_shadow_context(patch.shadow),
    )


def render_kbuild(names: Iterable[str]) -> str:
    return _template("Kbuild.j2").render(names=sorted(names))


def render_module(module: Module) -> str:
    if isinstance(module, PatchModule):
        return render_patch(module)
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
    return {m.name: render_module(m) for m in modules}


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
