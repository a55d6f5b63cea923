"""What a call depends on in a function's prototype, read from BTF or from DWARF.

A replacement is called with the original's arguments and its result is returned to
the original's callers, so it must agree with the original on the number of
parameters and on each parameter's and the return value's class and size: a pointer,
an integer (enum, bool, char included) of N bytes, a float of N bytes, a struct or
union passed by value (its tag and size), void.  Spelling (typedefs, const, which
struct a pointer points to) is not compared: BTF and DWARF spell the same type
differently, and the calling convention does not see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Shape:
    kind: str  # void, pointer, int, float, struct, union, ...
    size: int = 0
    name: str = ""  # a struct's or union's tag
    spelling: str = field(default="", compare=False)  # how the source spells it

    def spelled(self, spelling: str) -> Shape:
        return Shape(self.kind, self.size, self.name, spelling)

    def __str__(self) -> str:
        if self.spelling:
            return self.spelling
        if self.kind in ("int", "float"):
            return f"{self.kind}{8 * self.size}"
        return f"{self.kind} {self.name}".strip()


VOID = Shape("void", spelling="void")
ELLIPSIS = Shape("...", spelling="...")


@dataclass(frozen=True)
class Prototype:
    returns: Shape
    params: tuple[Shape, ...]

    def takes(self) -> str:
        return f"({', '.join(str(p) for p in self.params) or 'void'})"


def difference(original: Prototype, body: Prototype) -> tuple[str, str] | None:
    """How `original` and `body` disagree (what a caller would get wrong): the
    original's side and the body's, e.g. ("takes (int)", "takes (long)"); or None."""
    if original.params != body.params:
        return f"takes {original.takes()}", f"takes {body.takes()}"
    if original.returns != body.returns:
        return f"returns {original.returns}", f"returns {body.returns}"
    return None
