"""PostgreSQL array literals for the batch statements (``INSERT … SELECT FROM unnest(CAST(:x AS T[]))``).

A list parameter is adapted by the driver element by element in Python (its
array dumper: about 2 µs a value, a datetime more), which for a batch of
thousands of rows and a dozen columns costs more than the statement itself.
One text literal per column (``{1,2,NULL}``), made here with ``str`` and
``join`` and read by the server's array input, costs a fraction of that; the
``CAST`` in the statement gives the element type, so the server parses each
value exactly as it would a bound one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal


def plain(values: Iterable[int | Decimal | bool | None]) -> str:
    """Integers, decimals or booleans (``NULL`` for ``None``)."""
    return "{" + ",".join("NULL" if v is None else ("t" if v else "f") if isinstance(v, bool) else str(v)
                          for v in values) + "}"


def numbers(values: Iterable[int | Decimal]) -> str:
    """Integers or decimals, none of them ``None`` nor a bool: :func:`plain` without its per-value tests."""
    return "{" + ",".join(map(str, values)) + "}"


def texts(values: Iterable[str | None]) -> str:
    """Texts, each quoted (``NULL`` for ``None``)."""
    return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def times(values: Iterable[datetime | None]) -> str:
    """Aware datetimes in ISO 8601 with their offset (``NULL`` for ``None``); naive ones are refused.

    Each distinct value is formatted once: a term's lessons share a few dozen
    start times across thousands of rows.
    """
    seen: dict[datetime, str] = {}
    out = []
    for v in values:
        if v is None:
            out.append("NULL")
            continue
        text = seen.get(v)
        if text is None:
            if v.tzinfo is None:
                raise ValueError("a naive datetime in a timestamptz array")
            text = seen[v] = '"' + v.isoformat() + '"'
        out.append(text)
    return "{" + ",".join(out) + "}"
