"""JSON text of batch parameters for PostgreSQL, made by orjson: a tenth of ``json.dumps``'s time.

The batch writers (:mod:`pelago.core.bulk`, the outbox's ``core_emit`` calls)
send a batch as one JSON parameter, which PostgreSQL parses into its columns
(``json_to_recordset``, ``jsonb``). So only the values must be the same as
``json.dumps`` gives, not the text: orjson writes no spaces and UTF-8 rather
than ``\\u`` escapes, and PostgreSQL reads both alike. Datetimes, dataclasses
and anything else orjson cannot write (integers past 64 bits) go the way they
went before: ``default``, or ``json.dumps`` itself. The one value orjson writes
where ``json.dumps`` wrote invalid JSON (which PostgreSQL refused): a float
NaN or infinity, which becomes ``null``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """``json.dumps(value, default=default)`` as PostgreSQL reads it, made faster."""
    try:
        return orjson.dumps(value, default=default, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=default)  # its own answer, or its own error


def loads(text: str) -> Any:
    """``json.loads(text)``, made by orjson; ``json.loads`` itself for what orjson refuses
    (integers past 64 bits), so the values are always the same."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
