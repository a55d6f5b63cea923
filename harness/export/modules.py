"""The C of exported test modules: plain templates (kmod_templates/export/), with
none of the harness's instrumentation (no call counters, no debugfs, no counting
trampolines): a target's functions are read through /proc/<target>/<func>, a
replacement prints the line upstream's test_klp_livepatch prints, callbacks and
states log upstream's lines.  The model predicts these modules' lines exactly as it
does the harness's own (docs/scenario-format.md, "What generated modules log").
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from harness.scenario.types import (
    VMLINUX,
    VMLINUX_FUNCS,
    Callback,
    PatchModule,
    Scenario,
    TargetModule,
)

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "kmod_templates" / "export"


@cache
def templates() -> jinja2.Environment:
    """The export's templates: its modules' C and the reproducer's run.sh."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_target(target: TargetModule, origin: str) -> str:
    return (
        templates()
        .get_template("target.c.j2")
        .render(
            name=target.name,
            origin=origin,
            funcs=list(target.funcs),
            blocker=target.blocker,
            log_init_exit=target.log_init_exit,
            kprobe=target.kprobe,
        )
    )


def render_patch(patch: PatchModule, origin: str) -> str:
    objects: list[dict[str, Any]] = []
    headers: dict[str, None] = {}
    uses_seq = uses_park = False
    for index, obj in enumerate(patch.objects):
        vmlinux = obj.name == VMLINUX
        info: dict[str, dict[str, Any]] = {}
        for func in obj.funcs:
            spec = obj.spec(func)
            if spec.body is not None:
                headers.update(dict.fromkeys(spec.body.headers))
            else:
                uses_seq = uses_seq or vmlinux
                uses_park = uses_park or not vmlinux
            # index-qualified: two objects may have functions of one name
            new = f"livepatch_{func}" if index == 0 else f"livepatch_{index}_{func}"
            info[func] = {"new": new, "sympos": spec.sympos, "body": spec.body}
        objects.append(
            {
                "name": obj.name,
                "vmlinux": vmlinux,
                "funcs": list(obj.funcs),
                "info": info,
                "callbacks": [cb.value for cb in Callback if cb in obj.callbacks],
                "relocs": obj.klp_relocs,
            }
        )
    used = {cb for obj in patch.objects for cb in obj.callbacks}
    return (
        templates()
        .get_template("livepatch.c.j2")
        .render(
            name=patch.name,
            origin=origin,
            replace=int(patch.replace),
            pre_patch_ret=patch.pre_patch_ret,
            objects=objects,
            proc=VMLINUX_FUNCS,
            callbacks=[cb.value for cb in Callback if cb in used],
            states=list(patch.states),
            headers=list(headers),
            uses_seq=uses_seq,
            uses_park=uses_park,
            relocs=any(obj.klp_relocs for obj in patch.objects),
        )
    )


def render_sources(scenario: Scenario, origin: str) -> dict[str, str]:
    """{module name: C} of every module of an exportable scenario; `origin` says
    where they come from (a line of each file's header comment)."""
    sources: dict[str, str] = {}
    for module in scenario.modules:
        if isinstance(module, PatchModule):
            sources[module.name] = render_patch(module, origin)
        else:
            sources[module.name] = render_target(module, origin)
    return sources


def kbuild(names: list[str]) -> str:
    """obj-m lines building `names` (a Kbuild file, or lines of a Makefile)."""
    return "".join(f"obj-m += {name}.o\n" for name in sorted(names))
