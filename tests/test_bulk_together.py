"""``core.bulk.write_together``: results line up with the parts as given, skipped ones included."""

from __future__ import annotations

import pytest
from sqlalchemy import BigInteger, Column, MetaData, Table, Text, text

from pelago.core.bulk import Call, Change, Part, write_together

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


def test_a_gated_write_writes_the_rest_only_when_its_first_insert_did(tenant: TenantHandle) -> None:
    """PostgreSQL: the first part gates the other parts and the calls, in one statement; changes run anyway."""
    with tenant.runtime.sessions() as session:
        if session.get_bind().dialect.name != "postgresql":
            with pytest.raises(ValueError):
                write_together(session, [Part(PROBE, {"note": "text"}, [("a",)], {}, "RETURNING id")], gated=True)
            return
        session.execute(text("CREATE TEMP TABLE bulk_probe (id bigserial PRIMARY KEY, note text UNIQUE) "
                             "ON COMMIT DROP"))
        session.execute(text("INSERT INTO bulk_probe (id, note) VALUES (1000, 'taken'), (1001, 'moved')"))

        def write(note: str, moved_to: str) -> tuple[list[list[object]], list[object]]:
            return write_together(session, [
                Part(PROBE, {"note": "text"}, [(note,)], {}, "ON CONFLICT (note) DO NOTHING RETURNING id, note"),
                Part(PROBE, {"note": "text"}, [(note + "-child",)], {}, "RETURNING note"),
            ], [Call("41 + CAST(:g_one AS int)", {"g_one": 1})],
                [Change(PROBE, {"id": "bigint"}, {"note": "text"}, [(1001, moved_to)])], gated=True)

        returned, values = write("taken", "moved-1")
        assert returned == [[], []] and values == [None]
        assert session.scalar(text("SELECT count(*) FROM bulk_probe WHERE note LIKE 'taken-%'")) == 0
        assert session.scalar(text("SELECT note FROM bulk_probe WHERE id = 1001")) == "moved-1"
        returned, values = write("fresh", "moved-2")
        assert [note for _, note in returned[0]] == ["fresh"] and returned[1] == [("fresh-child",)]
        assert values == [42]
        assert session.scalar(text("SELECT note FROM bulk_probe WHERE id = 1001")) == "moved-2"
        with pytest.raises(ValueError):
            write_together(session, [Part(PROBE, {"note": "text"}, [], {}, "RETURNING id")], gated=True)
        session.rollback()
