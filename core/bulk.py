"""Bulk inserts: a batch of rows in one statement, on PostgreSQL and SQLite.

The core's batch writers (the intake line, ownership changes) use it. On
PostgreSQL the batch travels as one JSON parameter; on SQLite through the
driver's ``executemany``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from itertools import chain, repeat
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.orm import Session

# The arguments:
# ``columns`` maps each varying column to its PostgreSQL type, ``rows`` holds one
# tuple of Python values per row in that order (dicts for jsonb, datetimes for
# timestamptz), ``fixed`` maps a column to its type and the value every row shares.

Columns = Mapping[str, str]
Fixed = Mapping[str, tuple[str, Any]]

_PG_INSERTS: dict[tuple[Any, ...], Any] = {}


def write_rows(
    session: Session, table: Table, columns: Columns, rows: Sequence[Sequence[Any]], fixed: Fixed, tail: str = "",
) -> list[Any]:
    """INSERT ``rows`` into ``table``; returns what ``tail``'s RETURNING gives, if any."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return _pg_write(session, table.name, columns, rows, fixed, tail)
    return _sqlite_write(session, table, columns, rows, fixed, tail)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _pg_write(
    session: Session, table: str, columns: Columns, rows: Sequence[Sequence[Any]], fixed: Fixed, tail: str,
) -> list[Any]:
    """PostgreSQL: ``INSERT INTO table … SELECT … FROM json_to_recordset(:rows)``.

    The whole batch travels as one JSON parameter: one statement with a few
    parameters whatever the row count, no SQL to build, send or parse per
    row and no per-value adaptation (psycopg adapts list parameters value by
    value in Python; ``json.dumps`` is C).
    """
    key = (table, tuple(columns.items()), tuple((c, t) for c, (t, _) in fixed.items()), tail)
    stmt = _PG_INSERTS.get(key)
    if stmt is None:
        stmt = text(pg_insert_sql(table, columns, fixed, tail))
        _PG_INSERTS[key] = stmt
    result = session.execute(stmt, pg_params(columns, rows, fixed))
    return list(result) if "RETURNING" in tail else []


def pg_insert_sql(table: str, columns: Columns, fixed: Fixed, tail: str = "", prefix: str = "") -> str:
    """The SQL of :func:`write_rows` on PostgreSQL; ``prefix`` sets its parameters apart (a CTE of many)."""
    picks = [f"u.{c}" for c in columns] + [f"CAST(:{prefix}k_{c} AS {t})" for c, (t, _) in fixed.items()]
    spec = ", ".join(f"{c} {t}" for c, t in columns.items())
    return (
        f"INSERT INTO {table} ({', '.join([*columns, *fixed])}) SELECT {', '.join(picks)} "
        f"FROM json_to_recordset(CAST(:{prefix}rows AS json)) AS u({spec}) {tail}"
    )


def pg_params(columns: Columns, rows: Sequence[Sequence[Any]], fixed: Fixed, prefix: str = "") -> dict[str, Any]:
    """The parameters of :func:`pg_insert_sql`'s statement for ``rows``."""
    names = tuple(columns)
    params = {f"{prefix}k_{c}": value for c, (_, value) in fixed.items()}
    params[f"{prefix}rows"] = json.dumps(
        [dict(zip(names, row, strict=True)) for row in rows], default=_json_default
    )
    return params


def _sqlite_write(
    session: Session, table: Table, columns: Columns, rows: Sequence[Sequence[Any]], fixed: Fixed, tail: str,
) -> list[Any]:
    """SQLite: the driver's ``executemany`` (C), or multi-row VALUES where rows come back.

    Values are converted once by the columns' own types (JSON text, UTC
    datetimes as SQLAlchemy stores them), constants once per batch.
    """
    conn = session.connection()
    dialect = conn.dialect
    convert = []
    for k, (name, kind) in enumerate(columns.items()):
        if kind in ("jsonb", "timestamptz"):
            process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                convert.append((k, _memo(process) if kind == "timestamptz" else _json_fast(process)))
    consts = []
    for name, (_, value) in fixed.items():
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        consts.append(process(value) if process is not None and value is not None else value)
    # Column by column, so the loops are the interpreter's own (zip, map), not Python's.
    columns_of: list[Any] = list(zip(*rows, strict=True))
    for k, process in convert:
        columns_of[k] = map(process, columns_of[k])
    params = list(zip(*columns_of, *(repeat(c, len(rows)) for c in consts), strict=True))
    names = [*columns, *fixed]
    marks = f"({', '.join('?' * len(names))})"
    head = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES "
    if "RETURNING" not in tail:
        conn.exec_driver_sql(f"{head}{marks} {tail}", params)
        return []
    import sqlite3

    raw = conn.connection.driver_connection
    limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if raw is not None else 999
    out: list[Any] = []
    step = max(limit // len(names), 1)
    for chunk in (params[i:i + step] for i in range(0, len(params), step)):
        sql = f"{head}{', '.join([marks] * len(chunk))} {tail}"
        out.extend(conn.exec_driver_sql(sql, tuple(chain.from_iterable(chunk))))
    return out


def _memo(process: Any) -> Any:
    """``process`` remembering its answers: a batch's datetimes are a handful of values."""
    done: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        if value not in done:
            done[value] = process(value)
        return done[value]

    return convert


def _json_fast(process: Any) -> Any:
    """``process`` (a JSON column's), with the empty object, the common case, done once."""
    empty = process({})

    def convert(value: Any) -> Any:
        return empty if type(value) is dict and not value else process(value)

    return convert


def pg_update_sql(table: str, keys: Columns, values: Columns, prefix: str = "") -> str:
    """``UPDATE table SET … FROM json_to_recordset(:rows)``: a batch of rows changed by key, on PostgreSQL.

    Its parameters come from :func:`pg_params` with ``{**keys, **values}`` as the columns.
    """
    spec = ", ".join(f"{c} {t}" for c, t in {**keys, **values}.items())
    sets = ", ".join(f"{c} = u.{c}" for c in values)
    match = " AND ".join(f"{table}.{c} = u.{c}" for c in keys)
    return f"UPDATE {table} SET {sets} FROM json_to_recordset(CAST(:{prefix}rows AS json)) AS u({spec}) WHERE {match}"

