"""PostgreSQL connections are checked at checkout with a round trip only when in doubt (core/db.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from pelago.core import db

pytestmark = pytest.mark.postgres


@pytest.fixture
def fresh(db_url: str) -> Iterator[tuple[Engine, list[int]]]:
    """An engine of its own on the run's database, and the pings it sent (one entry per ping)."""
    engine = db.make_engine(db_url, pool_size=1, max_overflow=0)
    pings: list[int] = []
    real = engine.dialect.do_ping

    def counting(dbapi_conn):  # type: ignore[no-untyped-def]
        pings.append(1)
        return real(dbapi_conn)

    engine.dialect.do_ping = counting  # type: ignore[method-assign]
    yield engine, pings
    engine.dispose()


def _backend(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_live_connection_used_again_is_not_pinged(fresh: tuple[Engine, list[int]]) -> None:
    engine, pings = fresh
    first = _backend(engine)
    for _ in range(5):
        assert _backend(engine) == first  # the same pooled connection, reused
    assert pings == []


def test_a_connection_idle_longer_than_the_limit_is_pinged(fresh, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    engine, pings = fresh
    first = _backend(engine)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", -1.0)  # every connection has been idle "too long"
    assert _backend(engine) == first
    assert pings == [1]


def test_a_terminated_pooled_connection_is_replaced_without_an_error(fresh: tuple[Engine, list[int]]) -> None:
    """Terminated right after its last use (a restart): its socket says so, the ping confirms, a new one serves."""
    engine, pings = fresh
    first = _backend(engine)
    admin = create_engine(engine.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as other:  # waits for the backend to exit
        assert other.execute(text("SELECT pg_terminate_backend(:p, 10000)"), {"p": first}).scalar()
    admin.dispose()
    second = _backend(engine)  # no error: replaced at checkout
    assert second != first
    assert pings == [1]
