"""The throwaway database of a test run, and the services a run may lack.

One database per run (per pytest session): a SQLite file in pytest's tmp dir,
or a fresh PostgreSQL database created on the server and dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

KINDS = ("sqlite", "postgresql")
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def services_required() -> bool:
    """``PELAGO_REQUIRE_SERVICES=1`` (CI): a missing service fails the test instead of skipping it."""
    return os.environ.get("PELAGO_REQUIRE_SERVICES") == "1"


def missing(message: str) -> NoReturn:
    """Skip with ``message``, or fail with it when services are required."""
    if services_required():
        pytest.fail(f"{message} (PELAGO_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


def psycopg_url(url: str) -> str:
    """``postgresql://`` → ``postgresql+psycopg://`` (the driver Pelago installs)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@contextmanager
def sqlite_database(folder: Path) -> Iterator[str]:
    yield f"sqlite:///{folder / 'pelago.db'}"


@contextmanager
def postgresql_database(server_url: str) -> Iterator[str]:
    """A new database ``pelago_test_<random>`` on ``server_url``'s server, dropped afterwards.

    ``server_url`` names any database the user can connect to; the user needs
    ``CREATEDB``. An unreachable server skips (or fails, see :func:`missing`).
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin_url = psycopg_url(server_url)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"pelago_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        reason = str(exc.orig or exc).strip().splitlines()[0]
        missing(f"PostgreSQL is not reachable at {server_url}: {reason}")
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
            ), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def redis_url() -> str:
    return os.environ.get("PELAGO_TEST_REDIS", DEFAULT_REDIS_URL)


_redis_up: dict[str, bool] = {}


def redis_available(url: str) -> bool:
    """Whether Redis answers at ``url`` (asked once per run; ``PELAGO_TEST_REDIS_AVAILABLE=no`` skips asking)."""
    if os.environ.get("PELAGO_TEST_REDIS_AVAILABLE") == "no":
        return False
    if url not in _redis_up:
        try:
            import redis

            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
            _redis_up[url] = True
        except Exception:  # noqa: BLE001 - any failure means "not usable"
            _redis_up[url] = False
    return _redis_up[url]


def require_redis() -> str:
    """The test Redis URL, or skip (fail when services are required) if it does not answer."""
    url = redis_url()
    if not redis_available(url):
        missing(f"Redis is not reachable at {url}")
    return url
