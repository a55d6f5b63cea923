"""Names derived from scenario files for paths and reports: safe and unique.

A scenario's name is its file's stem, which is for people; it is not fit for a path or
a report line as it stands.  Two files of the same name in different folders would
share an artifacts directory; `..toml` has the stem `.` and `...toml` the stem `..`,
which as a path component point at the results directory or its parent; and a file
name may hold a newline or ` # SKIP`, which would inject lines or directives into
KTAP output.  So a run gives each scenario an *artifact id*: one path component of
`[A-Za-z0-9._-]`, never hidden, `.` or `..`, unique within the run, as readable as
the file allows (the stem; with as many parent folders as it takes to tell files
apart: `seeds-004_replace`, `upstream-004_replace`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from harness.scenario.types import Scenario

MAX_COMPONENT = 100  # file systems allow 255 bytes; room for suffixes and siblings
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_component(text: str, fallback: str = "scenario") -> str:
    """`text` as one path component: unsafe runs of characters become `_`, leading
    dots and dashes go (no hidden files, `.`/`..`, or option-like names), and a long
    one is shortened with a hash of the whole so that shortening keeps it distinct."""
    safe = _UNSAFE.sub("_", text).lstrip(".-").rstrip(".") or fallback
    if len(safe) > MAX_COMPONENT:
        digest = hashlib.sha256(text.encode(errors="replace")).hexdigest()[:12]
        safe = f"{safe[: MAX_COMPONENT - 13]}-{digest}"
    return safe


def _label(path: Path, depth: int) -> str:
    """The stem and up to `depth - 1` parent folder names, joined with `-`."""
    parts = [*path.parent.parts, path.stem][-depth:]
    return "-".join(safe_component(p) for p in parts if p not in ("/", ""))


def artifact_ids(scenarios: Sequence[Scenario]) -> list[str]:
    """An artifact id per scenario, in order: unique within `scenarios`.

    Files whose stems collide get parent folders prepended until they differ; the
    same file listed twice (or names that only differ in unsafe characters) gets
    `-2`, `-3`, ... ."""
    paths = [Path(s.path).absolute() for s in scenarios]
    depth = [1] * len(paths)
    ids = [_label(p, 1) for p in paths]
    while True:
        groups: dict[str, list[int]] = {}
        for i, label in enumerate(ids):
            groups.setdefault(label, []).append(i)
        grown = False
        for members in groups.values():
            if len({paths[i] for i in members}) < 2:
                continue  # one file (maybe listed twice): folders cannot tell it apart
            for i in members:
                deeper = _label(paths[i], depth[i] + 1)
                if deeper != ids[i]:
                    depth[i] += 1
                    ids[i] = deeper
                    grown = True
        if not grown:
            break
    return _numbered(ids)


def _numbered(ids: list[str]) -> list[str]:
    taken: set[str] = set()
    result = []
    for label in ids:
        candidate, count = label, 1
        while candidate in taken:
            count += 1
            candidate = f"{label}-{count}"
        taken.add(candidate)
        result.append(candidate)
    return result
