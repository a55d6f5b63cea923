"""Module parameter values parse as lib/kstrtox.c parses them, not as Python's int()."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.scenario.kstrto import (
    INT_MAX,
    INT_MIN,
    KstrtoError,
    kstrtoint,
    kstrtoll,
    parse_int_param,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("-19", -19),
        ("+5", 5),
        ("010", 8),  # a leading 0 is octal, which int(text, 0) refuses
        ("0x1F", 31),
        ("0X1f", 31),
        ("-0x10", -16),
        ("7\n", 7),  # what `echo 7 > /sys/module/m/parameters/p` writes
        ("-2147483648", INT_MIN),
        ("2147483647", INT_MAX),
        ("-0", 0),
    ],
)
def test_accepted_like_the_kernel(text: str, value: int) -> None:
    assert kstrtoint(text) == value
    assert parse_int_param(text) == value


@pytest.mark.parametrize(
    ("text", "errno_name"),
    [
        ("1_0", "EINVAL"),
        ("0b1", "EINVAL"),
        ("0o7", "EINVAL"),
        ("08", "EINVAL"),
        ("0x", "EINVAL"),
        ("0xg", "EINVAL"),
        ("\u0661\u0662", "EINVAL"),  # Arabic-Indic digits: str.isdigit() says yes
        ("\uff11", "EINVAL"),  # FULLWIDTH DIGIT ONE
        ("", "EINVAL"),
        (" 1", "EINVAL"),
        ("1 ", "EINVAL"),
        ("1\n\n", "EINVAL"),
        ("-", "EINVAL"),
        ("--1", "EINVAL"),
        ("+-1", "EINVAL"),
        ("-+1", "EINVAL"),
        ("1.0", "EINVAL"),
        ("2147483648", "ERANGE"),
        ("-2147483649", "ERANGE"),
        ("12345678901234567890", "ERANGE"),
        ("99999999999999999999999", "ERANGE"),
        ("0xffffffffffffffffff", "ERANGE"),
    ],
)
def test_refused_like_the_kernel(text: str, errno_name: str) -> None:
    with pytest.raises(KstrtoError) as info:
        kstrtoint(text)
    assert info.value.errno_name == errno_name
    assert parse_int_param(text) is None


def test_long_long_limits() -> None:
    assert kstrtoll("-9223372036854775808") == -(2**63)
    with pytest.raises(KstrtoError, match="largest long long"):
        kstrtoll("9223372036854775808")


@given(st.integers(INT_MIN, INT_MAX))
def test_every_int_in_every_spelling(number: int) -> None:
    sign = "-" if number < 0 else ""
    magnitude = abs(number)
    for text in (str(number), f"{sign}{magnitude:#x}", f"{sign}0{magnitude:o}"):
        assert kstrtoint(text) == number, text
