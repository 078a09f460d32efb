"""The pytest plugin (entry point ``pytest11: pelago``): options, markers and fixtures.

Loaded by pytest in any environment where Pelago is installed; nothing
happens unless a test uses a fixture. docs/testing.md describes each one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest

from ._cli import invoke_cli
from ._db import DEFAULT_PG_URL, KINDS, postgresql_database, require_redis, sqlite_database
from ._tenants import TenantHandle, new_operator_key, new_tenant

if TYPE_CHECKING:  # pragma: no cover
    from click.testing import Result
    from flask import Flask
    from sqlalchemy import Engine

    from pelago.core.clock import FrozenClock
    from pelago.core.host import PluginHost
    from pelago.core.runtime import Runtime
    from pelago.core.spec import PluginSpec

#: the ``clock`` fixture's time: a Monday, 10:00 in Shanghai
FROZEN_AT = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)


class _Default:
    def __repr__(self) -> str:
        return "<pelago_plugins>"


#: ``make_runtime``/``make_app`` without ``plugins``: the ``pelago_plugins`` fixture's set
DEFAULT_PLUGINS: Any = _Default()


# --- options and markers ---------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pelago", "Pelago (pelago.testing)")
    group.addoption(
        "--pelago-db", dest="pelago_db", default=None, metavar="sqlite|postgresql",
        help="database of this run: a throwaway SQLite file, or a throwaway database on the PostgreSQL "
             "server of --pelago-pg-url (default: env PELAGO_TEST_DB, else sqlite)",
    )
    group.addoption(
        "--pelago-pg-url", dest="pelago_pg_url", default=None, metavar="URL",
        help="a PostgreSQL database to connect to for creating the run's database (its user needs CREATEDB; "
             f"default: env PELAGO_TEST_PG, else {DEFAULT_PG_URL})",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs PostgreSQL (skipped on the SQLite run)")
    config.addinivalue_line("markers", "redis: needs a running Redis (skipped when it is not reachable)")
    # Secrets at rest (pelago.core.crypto): a fixed key for the run, unless the caller set one,
    # so no test writes a key file into the working directory.
    os.environ.setdefault("PELAGO_SECRET_KEYS", "pGNp1d8tVbx0A3X-zIvOEdU4kDBk6HUNBk9P0zvE9Q8=")
    kind = config.getoption("pelago_db") or os.environ.get("PELAGO_TEST_DB") or "sqlite"
    if kind not in KINDS:
        raise pytest.UsageError(f"--pelago-db (or PELAGO_TEST_DB) must be sqlite or postgresql, not {kind!r}")
    config.option.pelago_db = kind
    config.option.pelago_pg_url = (
        config.getoption("pelago_pg_url") or os.environ.get("PELAGO_TEST_PG") or DEFAULT_PG_URL
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"pelago: database {config.option.pelago_db}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.option.pelago_db == "postgresql":
        return
    skip = pytest.mark.skip(reason="PostgreSQL-only (concurrency or PG feature): runs in the PostgreSQL pass")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


# --- the database of the run -----------------------------------------------------------


@pytest.fixture(scope="session")
def pelago_db(pytestconfig: pytest.Config) -> str:
    """``"sqlite"`` or ``"postgresql"``: the database of this run."""
    return pytestconfig.option.pelago_db  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def pelago_pg_url(pytestconfig: pytest.Config) -> str:
    """The PostgreSQL server (a database on it) where the run's database is created."""
    return pytestconfig.option.pelago_pg_url  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def db_url(pelago_db: str, pelago_pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the run's empty database, dropped at the end of the run."""
    if pelago_db == "postgresql":
        with postgresql_database(pelago_pg_url) as url:
            yield url
    else:
        with sqlite_database(tmp_path_factory.mktemp("db")) as url:
            yield url


@pytest.fixture(scope="session")
def pelago_migrated_plugins() -> Sequence[str] | None:
    """The plugins whose migrations build the run's database; ``None``: every installed plugin that loads.

    Override it in your ``conftest.py`` to name them (their load errors then fail the run).
    """
    return None


@pytest.fixture(scope="session")
def pelago_migration_host(pelago_migrated_plugins: Sequence[str] | None) -> PluginHost:
    """The plugin host of ``pelago_migrated_plugins``: what ``engine`` was migrated with."""
    from pelago.core.host import PluginHost

    names = pelago_migrated_plugins
    return PluginHost(None if names is None else tuple(names), strict=names is not None)


@pytest.fixture(scope="session")
def engine(db_url: str, pelago_migration_host: PluginHost) -> Iterator[Engine]:
    """The run's database, migrated once by the Alembic migrations (never ``create_all``)."""
    from pelago.core import migrate
    from pelago.core.db import make_engine

    eng = make_engine(db_url)
    migrate.upgrade(eng, pelago_migration_host)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def pelago_plugins(pelago_migration_host: PluginHost) -> Sequence[str] | None:
    """The plugins of ``make_app()``/``make_runtime()`` when not named: by default every migrated one."""
    return tuple(pelago_migration_host.specs)


# --- runtimes and apps -----------------------------------------------------------------


@pytest.fixture
def clock() -> FrozenClock:
    """A :class:`FrozenClock` at 2026-03-02 02:00 UTC (10:00 in Shanghai); ``clock.advance(hours=1)``."""
    from pelago.core.clock import FrozenClock

    return FrozenClock(FROZEN_AT)


@pytest.fixture
def make_runtime(
    engine: Engine, clock: FrozenClock, pelago_plugins: Sequence[str] | None
) -> Callable[..., Runtime]:
    """``make_runtime(plugins=pelago_plugins, *, redis=False, strict=True, queue_name=None, extra=()) -> Runtime``.

    A runtime on the run's database with the test's ``clock``. Without Redis
    jobs and event deliveries run inline after commit; ``redis=True`` uses
    the test Redis (skips when it is not reachable) and a queue of its own.
    ``extra``: ``PluginSpec`` objects deployed beside the installed plugins
    without an entry point (a test's own plugin; name it in ``plugins`` too,
    and give it no tables: the run's database is already migrated).
    """
    from pelago.core.host import PluginHost
    from pelago.core.runtime import Runtime

    def factory(
        plugins: Sequence[str] | None = DEFAULT_PLUGINS,
        *, redis: bool = False, strict: bool = True, queue_name: str | None = None,
        extra: Sequence[PluginSpec] = (),
    ) -> Runtime:
        chosen = pelago_plugins if plugins is DEFAULT_PLUGINS else plugins
        host = PluginHost(None if chosen is None else tuple(chosen), strict=strict, extra=extra)
        return Runtime(
            host, engine, redis_url=require_redis() if redis else None, clock=clock,
            queue_name=queue_name or f"pelago-test-{uuid.uuid4().hex[:8]}",
        )

    return factory


@pytest.fixture
def make_app(make_runtime: Callable[..., Runtime], db_url: str) -> Callable[..., Flask]:
    """``make_app(plugins=pelago_plugins, **make_runtime_options) -> Flask``: the API on a new runtime."""
    from pelago.hostapp import Settings, create_app

    def factory(plugins: Sequence[str] | None = DEFAULT_PLUGINS, **kw: Any) -> Flask:
        app = create_app(Settings(database_url=db_url), runtime=make_runtime(plugins, **kw))
        app.config["TESTING"] = True
        return app

    return factory


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """``make_app()``: the API with the ``pelago_plugins``."""
    return make_app()


@pytest.fixture
def tenant(app: Flask) -> TenantHandle:
    """A fresh tenant of ``app`` (``new_tenant(app)``)."""
    return new_tenant(app)


@pytest.fixture
def other_tenant(app: Flask) -> TenantHandle:
    """Another fresh tenant of ``app``, to prove isolation."""
    return new_tenant(app)


@pytest.fixture
def operator_key(app: Flask) -> str:
    """An API key of a new operator of ``app`` (no tenant; manages tenants)."""
    return new_operator_key(app)


@pytest.fixture
def redis_url() -> str:
    """The test Redis (env ``PELAGO_TEST_REDIS``); skips when it is not reachable."""
    return require_redis()


@pytest.fixture
def pelago_cli(request: pytest.FixtureRequest) -> Callable[..., Result]:
    """``pelago_cli(*args, app=None, runtime=None, input=None, env=None, catch_exceptions=False) -> Result``.

    Runs ``pelago ARGS...`` on ``runtime``, or ``app``'s runtime, by default
    the ``app`` fixture's (see :func:`pelago.testing.invoke_cli`).
    """

    def run(*args: str, app: Flask | None = None, runtime: Runtime | None = None, **kw: Any) -> Result:
        if runtime is None:
            runtime = (app if app is not None else request.getfixturevalue("app")).extensions["pelago"]
        assert runtime is not None
        return invoke_cli(runtime, *args, **kw)

    return run
