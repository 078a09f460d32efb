"""The SQLite write gate (``core.db.WriteGate``): never held by a connection that is gone (issue 14 review)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from pelago.core.db import gate_of, make_engine


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'gate.db'}", write_wait=0.3)
    yield engine
    engine.dispose()


def _write(engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))


def test_an_invalidated_connection_releases_the_gate(engine):
    conn = engine.connect()
    conn.execute(text("SELECT 1"))  # a transaction: the gate is held
    assert gate_of(engine)._holder is not None
    conn.invalidate()  # no commit, no rollback event
    conn.close()
    assert gate_of(engine)._holder is None
    _write(engine)  # was Busy after the 0.3 s wait: the gate stayed with the dead connection


def test_a_connection_closed_under_a_transaction_releases_the_gate(engine):
    conn = engine.connect()
    conn.begin()
    conn.execute(text("SELECT 1"))
    conn.connection.dbapi_connection.close()  # the driver's connection dies mid-transaction
    with pytest.raises(Exception):  # noqa: B017 - SQLAlchemy reports the dead connection its own way
        conn.close()
    assert gate_of(engine)._holder is None
    _write(engine)


def test_the_gate_still_serialises_live_transactions(engine):
    from pelago.core.errors import Busy

    holder = engine.connect()
    holder.execute(text("SELECT 1"))
    with pytest.raises(Busy):
        _write(engine)
    holder.rollback()
    holder.close()
    _write(engine)
