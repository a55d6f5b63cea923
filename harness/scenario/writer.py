"""A `Scenario` as a scenario file (docs/scenario-format.md): the inverse of the loader.

Used to ship what a program found (`klp-harness fuzz` writes its minimal histories
this way), so the text is meant to be read: `steps` first (a top-level key must come
before the first table), each step optionally followed by a comment, then the
targets and patches with only the keys that differ from their defaults.
`load_scenario(path)` of the written file gives back an equal scenario.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from harness.scenario.step_types import format_step
from harness.scenario.types import (
    Callback,
    FuncSpec,
    PatchModule,
    PatchObject,
    Scenario,
    ShadowOp,
    TargetModule,
)


def _string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's for everything we write)."""
    return json.dumps(text, ensure_ascii=False)


def _strings(items: Sequence[str]) -> str:
    return "[" + ", ".join(_string(item) for item in items) + "]"


def _shadow(ops: Sequence[ShadowOp]) -> str:
    tables = []
    for op in ops:
        fields = [f"op = {_string(op.kind.value)}"]
        if op.obj:
            fields.append(f"obj = {op.obj}")
        fields.append(f"id = {op.id}")
        if op.ctor_data:
            fields.append(f"ctor_data = {op.ctor_data}")
        if op.dtor:
            fields.append("dtor = true")
        tables.append("{ " + ", ".join(fields) + " }")
    return "[\n" + "".join(f"  {table},\n" for table in tables) + "]"


def _callbacks(callbacks: frozenset[Callback]) -> str:
    if callbacks == frozenset(Callback):
        return _string("all")
    return _strings([cb.value for cb in Callback if cb in callbacks])


def _module_file(kind: str, ko: str, flag: str, value: bool) -> list[str]:
    """A table naming a module file: what the file cannot say, the rest is read from
    it again for the profile the scenario runs on (harness.scenario.external)."""
    return [f"[[{kind}]]", f"ko = {_string(ko)}", *([f"{flag} = true"] if value else [])]


def _target(target: TargetModule) -> list[str]:
    if target.ko:
        lines = _module_file("target", target.ko, "log_init_exit", target.log_init_exit)
        if target.blocker is not None:
            lines.append(f"blocker = {_string(target.blocker.func)}")
        return lines
    lines = ["[[target]]", f"name = {_string(target.name)}", f"funcs = {_strings(target.funcs)}"]
    if target.blocker is not None:
        lines.append(f"blocker = {_string(target.blocker.func)}")
        if target.blocker.param != "block_transition":
            lines.append(f"blocker_param = {_string(target.blocker.param)}")
    if target.spinner is not None:
        spinner = target.spinner
        lines.append(
            f"spinner = {{ func = {_string(spinner.func)}, "
            f"inside = {str(spinner.inside).lower()}, "
            f"cond_resched = {str(spinner.cond_resched).lower()}, "
            f"rcu_tasks_qs = {str(spinner.rcu_tasks_qs).lower()}"
            + (f", cpu = {spinner.cpu}" if spinner.cpu is not None else "")
            + " }"
        )
    if not target.log_init_exit:
        lines.append("log_init_exit = false")
    if target.shadow:
        lines.append(f"shadow = {_shadow(target.shadow)}")
    if target.kprobe is not None and target.kprobe.kretprobe:
        lines.append(f"kprobe = {{ func = {_string(target.kprobe.func)}, kretprobe = true }}")
    elif target.kprobe is not None:
        post = "true" if target.kprobe.post_handler else "false"
        body = ", body = true" if target.kprobe.body else ""
        lines.append(
            f"kprobe = {{ func = {_string(target.kprobe.func)}, post_handler = {post}{body} }}"
        )
    return lines


def _code(code: str) -> str:
    """A body as a TOML multi-line literal string when it can be one (read as is),
    else a basic string."""
    if "'''" not in code and not code.endswith("'"):
        return "'''\n" + code + "'''"
    return _string(code)


def _func(obj: PatchObject, func: str) -> str:
    """A func as its name, or as a table when it has a sympos or a body."""
    spec = obj.spec(func)
    if spec == FuncSpec(func):
        return _string(func)
    fields = [f"name = {_string(func)}"]
    if spec.sympos:
        fields.append(f"sympos = {spec.sympos}")
    if spec.body is not None:
        if spec.body.headers:
            fields.append(f"headers = {_strings(spec.body.headers)}")
        fields.append(f"body = {_code(spec.body.code)}")
    return "{ " + ", ".join(fields) + " }"


def _funcs(obj: PatchObject) -> str:
    items = [_func(obj, func) for func in obj.funcs]
    if all(item.startswith('"') for item in items):
        return "[" + ", ".join(items) + "]"
    return "[\n" + "".join(f"  {item},\n" for item in items) + "]"


def _patch(patch: PatchModule) -> list[str]:
    if patch.ko:
        lines = _module_file("patch", patch.ko, "callback_lines", patch.callback_lines)
        return lines + ([f"check = {_string(patch.check)}"] if patch.check else [])
    lines = ["[[patch]]", f"name = {_string(patch.name)}"]
    if patch.replace:
        lines.append("replace = true")
    if patch.pre_patch_ret:
        lines.append(f"pre_patch_ret = {patch.pre_patch_ret}")
    if patch.states:
        states = ", ".join(f"{{ id = {s.id}, version = {s.version} }}" for s in patch.states)
        lines.append(f"states = [{states}]")
    if patch.shadow:
        lines.append(f"shadow = {_shadow(patch.shadow)}")
    if patch.check:
        lines.append(f"check = {_string(patch.check)}")
    for obj in patch.objects:
        lines += ["", "[[patch.object]]", f"name = {_string(obj.name)}"]
        lines.append(f"funcs = {_funcs(obj)}")
        if obj.callbacks:
            lines.append(f"callbacks = {_callbacks(obj.callbacks)}")
        if obj.shadow_field is not None:
            lines.append(f"shadow_field = {obj.shadow_field:#x}")
        if obj.klp_relocs:
            lines.append("klp_relocs = true")
    return lines


def scenario_toml(
    scenario: Scenario,
    header: Sequence[str] = (),
    step_comments: dict[int, str] | None = None,
) -> str:
    """The scenario file's text; `header`: comment lines on top (without `#`),
    `step_comments`: a comment after step i."""
    comments = step_comments or {}
    lines = [f"# {line}".rstrip() for line in header]
    lines.append(f"description = {_string(scenario.description)}")
    if scenario.links:
        lines.append(f"links = {_strings(scenario.links)}")
    if scenario.kernels:
        lines.append(f"kernels = {_strings(scenario.kernels)}")
    if scenario.cpus != 1:
        lines.append(f"cpus = {scenario.cpus}")
    lines += ["", "steps = ["]
    for index, step in enumerate(scenario.steps):
        comment = comments.get(index)
        text = f"  {_string(format_step(step))},"
        lines.append(f"{text:<36}  # {comment}" if comment else text)
    lines.append("]")
    for group in scenario.processes:
        lines += ["", "[[processes]]", f"name = {_string(group.name)}", f"count = {group.count}"]
        if group.run != "getpid":
            lines.append(f"run = {_string(group.run)}")
    for prog in scenario.bpf:
        lines += ["", "[[bpf]]", f"name = {_string(prog.name)}", f"prog = {_string(prog.prog)}"]
        lines.append(f"func = {_string(prog.func)}")
    for target in scenario.targets:
        lines += ["", *_target(target)]
    for patch in scenario.patches:
        lines += ["", *_patch(patch)]
    return "\n".join(lines) + "\n"
