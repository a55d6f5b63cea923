"""Fixtures of the HTML report's tests: a copy of the recorded results directories
(tests/data/results/, see its README) to render into, and a small DOM of a page.

The pages are checked through a DOM built with the standard library's HTML parser
rather than by searching their text, so that a test asserts what a browser will see
(an element, its classes, its children) and not how the markup happens to be spelled.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

RESULTS = Path(__file__).parent.parent / "data" / "results"
NEW = "with-outcome"  # outcome.json, stacks, step timestamps
OLD = "before-outcome"  # what a run writes before the issue: none of them

# Elements HTML never closes; every other start tag opens an element (SVG shapes
# are written self-closed, which HTMLParser reports as handle_startendtag).
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr"}


@dataclass
class Node:
    """An element: its tag, attributes, and children (elements and text)."""

    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self) -> Iterator[Node]:
        """This element and every element under it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        """Elements under this one (itself included) with the tag, class and attributes
        (`data_func="x"` matches `data-func="x"`)."""
        wanted = {key.replace("_", "-"): value for key, value in attrs.items()}
        return [
            node
            for node in self.iter()
            if (tag is None or node.tag == tag)
            and (cls is None or cls in node.classes)
            and all(node.attrs.get(key) == value for key, value in wanted.items())
        ]

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        """The only such element (a test of a page wants exactly one)."""
        found = self.find_all(tag, cls, **attrs)
        assert len(found) == 1, f"{len(found)} <{tag} class={cls} {attrs}> found"
        return found[0]

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {key: value or "" for key, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {key: value or "" for key, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(text: str) -> Node:
    builder = _Builder()
    builder.feed(text)
    builder.close()
    return builder.root


@pytest.fixture
def results(tmp_path: Path) -> Callable[[str], Path]:
    """A fresh copy of a recorded results directory (`NEW` or `OLD`) to render into."""

    def copy(name: str) -> Path:
        target = tmp_path / "results" / name
        shutil.copytree(RESULTS / name, target)
        return target

    return copy


@pytest.fixture
def dom() -> Callable[[Path], Node]:
    """The DOM of a written page."""
    return lambda path: parse_html(path.read_text(encoding="utf-8"))
