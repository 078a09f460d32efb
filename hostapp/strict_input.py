"""Input the databases cannot store is refused at the door, with a 422.

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``1e400``, nests without
limit, and lets a NUL character or a lone UTF-16 surrogate through; PostgreSQL
refuses all of these (and SQLite stores what is then no longer JSON). Checking
once, where the request is parsed, covers the core's routes and every
plugin's alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

MAX_DEPTH = 32


class BadInput(ValueError):
    """The request is well-formed JSON (or a query string) that Pelago will not store."""


def _no_constants(name: str) -> Any:
    raise BadInput(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadInput(f"{text} is out of range")
    return value


def loads(raw: str) -> Any:
    """``json.loads`` that refuses non-standard numbers, deep nesting and unstorable text."""
    try:
        value = json.loads(raw, parse_constant=_no_constants, parse_float=_finite)
    except RecursionError:
        raise BadInput(f"nested deeper than {MAX_DEPTH} levels") from None
    check(value)
    return value


def check(value: Any) -> None:
    """Raise :class:`BadInput` for NUL characters, lone surrogates or nesting past ``MAX_DEPTH``."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadInput(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            check_text(item)
        elif isinstance(item, dict):
            for key, sub in item.items():
                check_text(key)
                stack.append((sub, depth + 1))
        elif isinstance(item, list):
            stack.extend((sub, depth + 1) for sub in item)


def check_text(text: str) -> None:
    if "\x00" in text:
        raise BadInput("text must not contain the NUL character (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput("text must not contain a lone UTF-16 surrogate") from None


def check_pairs(pairs: Iterable[tuple[str, str]]) -> None:
    for key, value in pairs:
        check_text(key)
        check_text(value)
