"""What a step left behind, drawn for its row of the steps table: func stacks, sysfs, log.

A difference in `impls` or `sysfs` is easiest to understand from the state it comes
from: which patches are stacked on each patched function (the kernel's func stack,
bottom first, a nop where an atomic replace left the original in place), which of
them the kernel ran and which the model expected, which patches sysfs shows and in
what order, and the step's kernel lines with the transition and callback lines
marked.  Func stacks come from the prediction's `stacks` (newer runs only); what ran
comes from the observed `impls`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from harness.report.artifact_types import Layer, Record
from harness.report.markup import text
from harness.report.timeline import CALLBACK, SIGNAL_LINE, TRANSITION_LINE


def step_state(want: Record | None, got: Record | None) -> str:
    """The func stacks, sysfs state and kernel log of one step ("" parts left out)."""
    return f"{_stacks(want, got)}{_sysfs_state(want, got)}{_log(got)}"


def _stacks(want: Record | None, got: Record | None) -> str:
    if want is None or want.stacks is None:
        return ""
    observed = got.impls if got else {}
    funcs = [f for f, layers in want.stacks.items() if layers]
    funcs += [f for f, impl in observed.items() if impl != "orig" and f not in funcs]
    boxes = "".join(
        _funcstack(f, want.stacks.get(f, ()), want.impls.get(f), observed.get(f)) for f in funcs
    )
    return f'<div class="funcstacks"><h3>func stacks</h3>{boxes or "(nothing patched)"}</div>'


def _top(layers: Sequence[Layer], impl: str | None) -> int | None:
    """Which box an implementation is: -1 the original, i a layer, None unknown/absent."""
    if impl is None:
        return None
    if impl == "orig":
        return -1
    for i in range(len(layers) - 1, -1, -1):
        if layers[i].patch == impl and not layers[i].nop:
            return i
    return None


def _funcstack(func: str, layers: Sequence[Layer], predicted: str | None, ran: str | None) -> str:
    """One function's func stack as boxes, bottom first in the DOM (drawn upwards)."""
    ran_at, model_at = _top(layers, ran), _top(layers, predicted)

    def marks(i: int) -> str:
        return (" ran" if ran_at == i else "") + (" predicted" if model_at == i else "")

    boxes = [f'<li class="base{marks(-1)}" data-patch="orig">orig</li>']
    for i, layer in enumerate(layers):
        nop = " nop" if layer.nop else ""
        label = f"{text(layer.patch)}{' <small>nop</small>' if layer.nop else ''}"
        boxes.append(
            f'<li class="layer{nop}{marks(i)}" data-patch="{text(layer.patch)}"'
            f"{' data-nop' if layer.nop else ''}>{label}</li>"
        )
    unexpected = (
        f'<p class="unexpected">the kernel ran {text(ran)}, which is not on this stack</p>'
        if ran is not None and ran_at is None
        else ""
    )
    return (
        f'<div class="funcstack" data-func="{text(func)}"><div class="fs-name">{text(func)}</div>'
        f'<ol class="fs-layers">{"".join(boxes)}</ol>{unexpected}</div>'
    )


def sysfs_patches(sysfs: Mapping[str, str]) -> list[tuple[str, dict[str, str], list[str]]]:
    """(patch, its attributes, its objects' `patched`) from sysfs keys, in stack order:
    `stack_order` when the kernel has it (6.14 on), else the order sysfs lists them."""
    attrs: dict[str, dict[str, str]] = {}
    objects: dict[str, list[str]] = {}
    for key, value in sysfs.items():
        parts = key.split("/")
        attrs.setdefault(parts[0], {})
        objects.setdefault(parts[0], [])
        if len(parts) == 2:
            attrs[parts[0]][parts[1]] = value
        elif len(parts) == 3 and parts[2] == "patched":
            objects[parts[0]].append(f"{parts[1]}={value}")
    order = list(attrs)
    if all(attrs[p].get("stack_order", "").isdigit() for p in order):
        order.sort(key=lambda p: int(attrs[p]["stack_order"]))
    return [(p, attrs[p], objects[p]) for p in order]


def _sysfs_state(want: Record | None, got: Record | None) -> str:
    record, side = (got, "kernel") if got else (want, "model")
    if record is None:
        return ""
    patches = sysfs_patches(record.sysfs)
    if not patches:
        return f'<div class="sysfs-state"><h3>livepatch sysfs ({side})</h3>(no patch)</div>'
    # replace (6.11 on) and stack_order (6.14 on) where the kernel has them
    columns = ["enabled", "transition"]
    columns += [c for c in ("replace", "stack_order") if any(c in a for _, a, _ in patches)]
    rows = []
    for patch, attrs, objects in patches:
        css = "enabled" if attrs.get("enabled") == "1" else "disabled"
        if attrs.get("transition") == "1":
            css += " in-transition"
        cells = "".join(f"<td>{text(attrs.get(c, '?'))}</td>" for c in columns)
        rows.append(
            f'<tr class="{css}" data-patch="{text(patch)}"><td>{text(patch)}</td>{cells}'
            f"<td>{text(', '.join(objects))}</td></tr>"
        )
    head = "".join(f"<th>{c}</th>" for c in ["patch", *columns, "objects patched"])
    return (
        f'<div class="sysfs-state"><h3>livepatch sysfs ({side})</h3><table>'
        f"<tr>{head}</tr>{''.join(rows)}</table></div>"
    )


def _log(got: Record | None) -> str:
    if got is None or not got.log:
        return ""
    lines = []
    for line in got.log:
        css = "ln"
        if line.startswith("% "):
            css += " cmd"
        elif SIGNAL_LINE in line:
            css += " signal"
        elif TRANSITION_LINE.search(line):
            css += " transition"
        elif CALLBACK.search(line):
            css += " callback"
        lines.append(f'<span class="{css}">{text(line)}</span>')
    return f'<div class="kernel-log"><h3>kernel log</h3><pre>{"".join(lines)}</pre></div>'
