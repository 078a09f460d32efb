"""The array literals of the batch statements read back as the values they were made from (PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import text

from pelago.plugins.scheduling import arrays


def test_array_literals_round_trip_through_postgresql(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL-only (array literals): runs in the PostgreSQL pass")
    words = ['plain', 'with "quotes"', "back\\slash", "逗号,和{括号}", "", None, "NULL"]
    at = datetime(2026, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    with engine.connect() as conn:
        def back(literal: str, kind: str) -> list:
            return list(conn.execute(text(f"SELECT CAST(:x AS {kind}[])"), {"x": literal}).scalar())
        assert back(arrays.texts(words), "text") == words
        assert back(arrays.plain([1, None, 2 ** 62]), "bigint") == [1, None, 2 ** 62]
        assert back(arrays.plain([Decimal("1.50"), Decimal("-0.01"), None]), "numeric") == [
            Decimal("1.50"), Decimal("-0.01"), None]
        assert back(arrays.plain([True, False, None]), "boolean") == [True, False, None]
        assert back(arrays.numbers([1, 2 ** 62]), "bigint") == [1, 2 ** 62]
        assert back(arrays.numbers([Decimal("1.50"), -Decimal("0.00"), Decimal("1E+1"), Decimal("-0.01")]),
                    "numeric") == [Decimal("1.50"), Decimal("0.00"), Decimal("10"), Decimal("-0.01")]
        assert back(arrays.times([at, None]), "timestamptz") == [at, None]
    with pytest.raises(ValueError):
        arrays.times([datetime(2026, 3, 2, 10, 0)])
