"""Keyset (cursor) pagination: fast at any depth, no ``COUNT(*)``."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from .errors import InvalidInput

T = TypeVar("T")
MAX_LIMIT = 200
MAX_ID = 2**63 - 1


@dataclass
class Page(Generic[T]):
    """One page of a list: its items and the cursor of the next page (``None`` on the last)."""

    items: Sequence[T]
    next_cursor: str | None


def encode(last_id: int) -> str:
    """An opaque cursor for the page after the row ``last_id``."""
    return base64.urlsafe_b64encode(json.dumps({"id": last_id}).encode()).decode().rstrip("=")


def decode(cursor: str) -> int:
    """The row id a cursor stands for; a bad cursor is a 422 on the ``cursor`` query field."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
        last_id = value["id"]
        if not isinstance(last_id, int) or isinstance(last_id, bool) or not 0 < last_id <= MAX_ID:
            raise ValueError
        return last_id
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            "bad cursor", {"cursor": ["not a cursor returned by this API"]}, location="query"
        ) from None


def paginate(
    session: Session, stmt: Select[Any], id_col: InstrumentedAttribute[int], cursor: str | None, limit: int,
    *, oldest_first: bool = False,
) -> Page[Any]:
    """Newest first by id (``oldest_first``: in id order); fetch ``limit + 1`` to know whether a next page exists."""
    if cursor:
        stmt = stmt.where(id_col > decode(cursor) if oldest_first else id_col < decode(cursor))
    rows = session.scalars(stmt.order_by(id_col.asc() if oldest_first else id_col.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode(rows[-1].id) if more and rows else None)
