"""``core.bulk.write_together``: results line up with the parts as given, skipped ones included."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, Table, Text, text

from pelago.core.bulk import Part, write_together

from .conftest import TenantHandle

PROBE = Table("bulk_probe", MetaData(), Column("id", BigInteger, primary_key=True), Column("note", Text))


def test_a_part_without_rows_keeps_its_place_in_the_results(tenant: TenantHandle) -> None:
    with tenant.runtime.sessions() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("CREATE TEMP TABLE bulk_probe (id bigserial PRIMARY KEY, note text) ON COMMIT DROP"))
        else:
            session.execute(text("CREATE TEMP TABLE bulk_probe (id INTEGER PRIMARY KEY, note TEXT)"))
        parts = [
            Part(PROBE, {"note": "text"}, [], {}, "RETURNING id"),
            Part(PROBE, {"note": "text"}, [("a",), ("b",)], {}, "RETURNING id, note"),
            Part(PROBE, {"note": "text"}, [], {}, "RETURNING id"),
        ]
        returned, values = write_together(session, parts)
        assert values == []
        assert len(returned) == 3 and returned[0] == [] and returned[2] == []
        assert sorted(note for _, note in returned[1]) == ["a", "b"]
        assert all(type(i) is int for i, _ in returned[1])
        assert write_together(session, [parts[0]]) == ([[]], [])
        session.rollback()
