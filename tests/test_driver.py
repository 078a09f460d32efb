"""Statements on the driver's own cursor (core/driver.py) fail the way every other statement does."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from pelago.core import driver
from pelago.core.db import make_sessionmaker

pytestmark = pytest.mark.postgres


def test_a_timeout_is_sqlalchemys_operational_error_with_its_sqlstate(engine):
    with make_sessionmaker(engine)() as session:
        session.execute(text("SET LOCAL statement_timeout = '20ms'"))
        with pytest.raises(OperationalError) as caught:
            driver.fetch_all(session, "SELECT pg_sleep(%(s)s)", {"s": 2}, prepare=False)
    assert caught.value.orig.sqlstate == "57014" and not caught.value.connection_invalidated


def test_a_bad_statement_is_sqlalchemys_programming_error(engine):
    with make_sessionmaker(engine)() as session, pytest.raises(ProgrammingError):
        driver.fetch_all(session, "SELECT nothing_here FROM core_lead", {})


def test_a_lost_server_invalidates_the_connection(engine):
    with make_sessionmaker(engine)() as session:
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
        admin = create_engine(engine.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:p, 10000)"), {"p": pid}).scalar()
        admin.dispose()
        with pytest.raises(OperationalError) as caught:
            driver.fetch_all(session, "SELECT 1", {})
        assert caught.value.connection_invalidated
        assert session.connection().invalidated

