"""Statements sent on the driver's own cursor (psycopg), with SQLAlchemy's error handling kept.

The single-lead API's lookups choose, statement by statement, whether
psycopg prepares them (``prepare=``), which SQLAlchemy's execution does not
offer. A statement run that way must still fail the way every other does:
its error is translated into SQLAlchemy's (``DBAPIError.instance``), so the
app's handlers answer a deadlock, a lock or statement timeout or a lost
server with 503 and an integrity race with 409 (never a 500), and a
connection the server dropped is invalidated instead of going back to the
pool.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


def fetch_all(session: Session, sql: str, params: dict[str, Any], *, prepare: bool | None = None) -> list[Any]:
    """The rows of ``sql`` (the driver's ``%(name)s`` parameters) run on the session's connection."""
    conn = session.connection()
    dialect = conn.dialect
    cursor: Any = conn.connection.cursor()
    try:
        cursor.execute(sql, params, prepare=prepare)
        return list(cursor.fetchall())
    except dialect.loaded_dbapi.Error as err:
        gone = dialect.is_disconnect(err, conn.connection.dbapi_connection, cursor)
        wrapped = DBAPIError.instance(sql, params, err, dialect.loaded_dbapi.Error, dialect=dialect,
                                      connection_invalidated=gone)
        if gone:
            conn.invalidate(wrapped)
        raise wrapped from err
    finally:
        cursor.close()
