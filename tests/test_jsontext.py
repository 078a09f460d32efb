"""core.jsontext: the same JSON values as json.dumps, whatever the text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pelago.core.jsontext import dumps

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=5),
    max_leaves=30,
)


@given(values)
def test_the_same_values_as_json_dumps(value: Any) -> None:
    assert json.loads(dumps(value)) == json.loads(json.dumps(value))


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def test_datetimes_go_through_default_as_before() -> None:
    at = datetime(2026, 12, 6, 4, 30, 0, 123, tzinfo=UTC)
    assert json.loads(dumps({"at": at}, _iso)) == {"at": at.isoformat()}
    with pytest.raises(TypeError):
        dumps({"at": at})


def test_what_orjson_cannot_write_falls_back_to_json() -> None:
    assert json.loads(dumps({"n": 2**70})) == {"n": 2**70}

    @dataclass
    class Point:
        x: int

    with pytest.raises(TypeError):  # json.dumps refuses it; so does dumps
        dumps(Point(1))
