"""Typed access to a parsed TOML tree: each helper returns the value with the type it
promises or raises a `ScenarioError` naming where in the file it is (`patch[1].replace`)
and what was there instead, so every reader of scenario tables reports bad input alike."""

from __future__ import annotations

from typing import Any

from harness.errors import ScenarioError


def check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            inside = f"{where}: " if where else ""
            raise ScenarioError(
                f"{where}.{key}" if where else key,
                f"unknown key {key!r} ({inside}allowed: {', '.join(sorted(allowed))})",
            )


def as_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ScenarioError(where, f"expected a string, got {kind(value)}")
    return value


def as_choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    """A string that must be one of `choices`."""
    text = as_str(value, where)
    if text not in choices:
        raise ScenarioError(where, f"must be one of {', '.join(choices)}")
    return text


def as_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ScenarioError(where, f"expected true or false, got {kind(value)}")
    return value


def as_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(where, f"expected an integer, got {kind(value)}")
    return value


def as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ScenarioError(where, f"expected a list, got {kind(value)}")
    return value


def as_str_list(value: Any, where: str) -> tuple[str, ...]:
    return tuple(as_str(item, f"{where}[{i}]") for i, item in enumerate(as_list(value, where)))


def as_tables(value: Any, where: str, how: str) -> list[dict[str, Any]]:
    items = as_list(value, where)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ScenarioError(f"{where}[{i}]", f"expected a table ({how}), got {kind(item)}")
    return items


def required(table: dict[str, Any], key: str, where: str) -> Any:
    if key not in table:
        raise ScenarioError(f"{where}.{key}" if where else key, "missing (required)")
    return table[key]


def kind(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }
    return f"{names.get(type(value), type(value).__name__)} ({value!r})"
