"""Module parameter values, parsed as the kernel parses them (lib/kstrtox.c).

`param_set_int` calls `kstrtoint(value, 0, ...)`, which is not Python's `int(value, 0)`:
the kernel takes `010` as octal 8 and a trailing newline, and refuses `1_0`, `0b1`,
`0o7`, spaces, non-ASCII digits and values that do not fit an int.  A scenario whose
value the kernel would refuse must fail when it is loaded, in one line, not after a
guest has booted and the load step has come back with -EINVAL; and the model must
give an accepted value the number the kernel gives it.  So this is the one parser.
"""

from __future__ import annotations

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
ULL_MAX = 2**64 - 1
_DIGITS = "0123456789abcdef"


class KstrtoError(ValueError):
    """The kernel would refuse the value: `errno_name` is EINVAL or ERANGE."""

    def __init__(self, errno_name: str, reason: str) -> None:
        super().__init__(reason)
        self.errno_name = errno_name


def _fixup_radix(text: str, base: int) -> tuple[str, int]:
    """_parse_integer_fixup_radix(): base 0 is 16 after `0x` + a hex digit, 8 after a
    leading 0, else 10; a `0x` prefix is skipped in base 16."""
    if base == 0:
        if text.startswith("0"):
            if text[1:2].lower() == "x" and text[2:3].lower() in _DIGITS[:16] and text[2:3]:
                base = 16
            else:
                base = 8
        else:
            base = 10
    if base == 16 and text[:1] == "0" and text[1:2].lower() == "x":
        text = text[2:]
    return text, base


def _kstrtoull(text: str, base: int) -> int:
    """_kstrtoull(): digits of `base`, then at most one newline, then nothing."""
    text, base = _fixup_radix(text, base)
    value = 0
    used = 0
    for char in text:
        digit = _DIGITS.find(char.lower()) if char.isascii() else -1
        if digit < 0 or digit >= base:
            break
        value = value * base + digit
        used += 1
        if value > ULL_MAX:
            raise KstrtoError("ERANGE", "too large for 64 bits")
    if used == 0:
        raise KstrtoError("EINVAL", "no digits")
    rest = text[used:]
    if rest not in ("", "\n"):
        raise KstrtoError("EINVAL", f"unexpected {rest[0]!r} after the number")
    return value


def kstrtoll(text: str, base: int = 0) -> int:
    """kstrtoll(): an optional `-` (or `+`), then _kstrtoull, within long long."""
    if text.startswith("-"):
        value = _kstrtoull(text[1:], base)
        if value > 2**63:
            raise KstrtoError("ERANGE", "below the smallest long long")
        return -value
    value = _kstrtoull(text[1:] if text.startswith("+") else text, base)
    if value >= 2**63:
        raise KstrtoError("ERANGE", "above the largest long long")
    return value


def kstrtoint(text: str, base: int = 0) -> int:
    """kstrtoint(): kstrtoll, then the value must fit an int."""
    value = kstrtoll(text, base)
    if not INT_MIN <= value <= INT_MAX:
        raise KstrtoError("ERANGE", f"out of range for an int ({INT_MIN}..{INT_MAX})")
    return value


# Values `param_set_bool` accepts that we allow in scenarios (kstrtobool would take a few
# more spellings; these are the unambiguous ones).
BOOL_TRUE = frozenset({"Y", "y", "1"})
BOOL_FALSE = frozenset({"N", "n", "0"})


def parse_bool_param(value: str) -> bool | None:
    """What `param_set_bool` makes of VALUE, or None if we do not accept it."""
    if value in BOOL_TRUE:
        return True
    if value in BOOL_FALSE:
        return False
    return None


def parse_int_param(value: str) -> int | None:
    """What `param_set_int` (kstrtoint, base 0) makes of VALUE, or None if the
    kernel would refuse it."""
    try:
        return kstrtoint(value)
    except KstrtoError:
        return None
