"""KTAP v1, the kernel's test result format (Documentation/dev-tools/ktap.rst): the one
writer for scenarios and for upstream's selftests.

A test is a line `ok N name` or `not ok N name`, with ` # SKIP reason` for one that
did not run; its subtests come first, indented by four spaces under their own
version line and plan; its diagnostics, `# ` lines, come just before its own line.
A document can be written whole, or as results arrive (`KtapStream`: the header,
then `result_lines` per test), which is how a run streams it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

_UNSAFE = re.compile(r"[^A-Za-z0-9._@:+=,/-]+")
VERSION = "KTAP version 1"


def ktap_safe(text: str) -> str:
    """A KTAP test name: no spaces, `#`, newlines or other characters that would end
    the name, start a directive or a line (names are the caller's to make safe:
    upstream's case names hold spaces, and its tools read them so)."""
    return _UNSAFE.sub("_", text) or "_"


@dataclass(frozen=True)
class KtapTest:
    name: str
    ok: bool
    diagnostics: tuple[str, ...] = ()
    skip: str | None = None  # the reason it did not run
    subtests: tuple[KtapTest, ...] = ()


def header(count: int, indent: str = "") -> list[str]:
    return [f"{indent}{VERSION}", f"{indent}1..{count}"]


def result_lines(number: int, test: KtapTest, indent: str = "") -> list[str]:
    """The lines of one test: its subtests, its diagnostics, its result line."""
    lines: list[str] = []
    if test.subtests:
        inner = indent + "    "
        lines += header(len(test.subtests), inner)
        for sub_number, sub in enumerate(test.subtests, 1):
            lines += result_lines(sub_number, sub, inner)
    lines += [f"{indent}# {line}".rstrip() for line in test.diagnostics]
    status = "ok" if test.ok or test.skip is not None else "not ok"
    directive = f" # SKIP {' '.join(test.skip.split())}" if test.skip is not None else ""
    lines.append(f"{indent}{status} {number} {test.name}{directive}")
    return lines


def ktap_document(tests: Sequence[KtapTest]) -> str:
    lines = header(len(tests))
    for number, test in enumerate(tests, 1):
        lines += result_lines(number, test)
    return "\n".join(lines) + "\n"


class KtapStream:
    """A KTAP document written as its results come: the header (whose plan, `count`,
    must be known up front) before the first result, each result as it is added,
    flushed at once so that a reader sees it while the run goes on."""

    def __init__(self, out: TextIO, count: int) -> None:
        self.out = out
        self.count = count
        self.number = 0

    def _write(self, lines: list[str]) -> None:
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()

    def add(self, test: KtapTest) -> None:
        lines = header(self.count) if self.number == 0 else []
        self.number += 1
        self._write(lines + result_lines(self.number, test))

    def close(self) -> None:
        """End the document: the header of an empty plan if nothing came."""
        if self.number == 0:
            self._write(header(self.count))
