"""Fixtures: a real database per run (SQLite or PostgreSQL), real Redis, test plugins.

``PELAGO_TEST_DB`` picks the database (``sqlite`` by default, ``postgresql``
for the machine's server: a throwaway database is created and dropped per run).
The schema is made by the Alembic migrations, never ``create_all``. Tests are
isolated by tenant: each gets fresh tenants, which is also how the product
isolates its customers.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, text

from pelago.core.clock import FrozenClock
from pelago.core.db import make_engine
from pelago.core.host import PluginHost
from pelago.core.runtime import Runtime
from pelago.hostapp import Settings, create_app

HERE = Path(__file__).parent
DB_KIND = os.environ.get("PELAGO_TEST_DB", "sqlite")
PG_ADMIN_URL = os.environ.get("PELAGO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("PELAGO_TEST_REDIS", "redis://127.0.0.1:6379/15")

# Test plugins are installed for real: a dist-info with entry points on sys.path.
TEST_PLUGINS = {
    "recorder": "tests.plugins.recorder:plugin",
    "failing": "tests.plugins.failing:plugin",
    "needs_recorder": "tests.plugins.needs_recorder:plugin",
    "broken": "tests.plugins.broken:plugin",
}
ALL_GOOD_PLUGINS = ("pool", "scheduling", "sms_nurture", "settlement", "lead_score",
                    "recorder", "failing", "needs_recorder")


def pytest_configure(config: pytest.Config) -> None:
    dist = Path(config.rootpath) / ".pytest_plugins_dist"
    info = dist / "pelago_test_plugins-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pelago-test-plugins\nVersion: 0.0.0\n")
    lines = ["[pelago.plugins]", *(f"{k} = {v}" for k, v in TEST_PLUGINS.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    if str(dist) not in sys.path:
        sys.path.append(str(dist))
    if str(config.rootpath) not in sys.path:
        sys.path.insert(0, str(config.rootpath))
    import importlib

    importlib.invalidate_caches()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if DB_KIND != "postgresql":
        skip = pytest.mark.skip(reason="PostgreSQL-only (concurrency or PG feature): runs in the PostgreSQL pass")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


def redis_available() -> bool:
    if os.environ.get("PELAGO_TEST_REDIS_AVAILABLE") == "no":
        return False
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return True
    except Exception:  # noqa: BLE001
        return False


# --- database -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if DB_KIND == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'pelago.db'}"
        return
    if DB_KIND != "postgresql":
        raise pytest.UsageError(f"PELAGO_TEST_DB must be sqlite or postgresql, not {DB_KIND!r}")
    name = f"pelago_test_{uuid.uuid4().hex[:10]}"
    admin_url = PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
            ), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(scope="session")
def full_host() -> PluginHost:
    """A host with every good plugin, used to migrate the test database."""
    return PluginHost(ALL_GOOD_PLUGINS, strict=True)


@pytest.fixture(scope="session")
def engine(db_url: str, full_host: PluginHost) -> Iterator[Engine]:
    from pelago.core import migrate

    eng = make_engine(db_url)
    migrate.upgrade(eng, full_host)
    yield eng
    eng.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc))  # 10:00 in Shanghai


# --- apps -------------------------------------------------------------------------------


@pytest.fixture
def make_runtime(engine: Engine, clock: FrozenClock) -> Iterator[Callable[..., Runtime]]:
    """Build a runtime on the test database with a chosen plugin set."""
    made: list[Runtime] = []

    def factory(
        plugins: tuple[str, ...] | list[str] | None = ("pool", "scheduling", "sms_nurture", "settlement"),
        *, redis: bool = False, strict: bool = True, queue_name: str | None = None,
    ) -> Runtime:
        host = PluginHost(plugins, strict=strict)
        rt = Runtime(
            host, engine, redis_url=REDIS_URL if redis else None, clock=clock,
            queue_name=queue_name or f"pelago-test-{uuid.uuid4().hex[:8]}",
        )
        made.append(rt)
        return rt

    yield factory


@pytest.fixture
def make_app(make_runtime: Callable[..., Runtime], db_url: str) -> Callable[..., Flask]:
    def factory(plugins: Any = ("pool", "scheduling", "sms_nurture", "settlement"), **kw: Any) -> Flask:
        rt = make_runtime(plugins, **kw)
        app = create_app(Settings(database_url=db_url), runtime=rt)
        app.config["TESTING"] = True
        return app

    return factory


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@dataclass
class TenantHandle:
    """A tenant with its people and their API clients."""

    app: Flask
    id: int
    slug: str
    team_id: int
    users: dict[str, int] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def runtime(self) -> Runtime:
        return self.app.extensions["pelago"]  # type: ignore[no-any-return]

    def headers(self, who: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def call(self, method: str, path: str, who: str = "admin", **kw: Any) -> Any:
        headers = {**self.headers(who), **kw.pop("headers", {})}
        return self.app.test_client().open(path, method=method.upper(), headers=headers, **kw)

    def get(self, path: str, who: str = "admin", **kw: Any) -> Any:
        return self.call("GET", path, who, **kw)

    def post(self, path: str, who: str = "admin", **kw: Any) -> Any:
        return self.call("POST", path, who, **kw)

    def patch(self, path: str, who: str = "admin", **kw: Any) -> Any:
        return self.call("PATCH", path, who, **kw)

    def put(self, path: str, who: str = "admin", **kw: Any) -> Any:
        return self.call("PUT", path, who, **kw)

    def lead(self, phone: str | None = None, who: str = "admin", **fields: Any) -> dict[str, Any]:
        body = {"name": fields.pop("name", "Lead"), **fields}
        if phone is not None:
            body["phone"] = phone
        r = self.post("/api/v1/leads", who, json=body)
        assert r.status_code in (200, 201), r.get_json()
        return r.get_json()  # type: ignore[no-any-return]


def new_tenant(app: Flask, slug: str | None = None) -> TenantHandle:
    """A tenant with a team, an admin, a manager and two reps, each with a key."""
    from pelago.core.models import Team
    from pelago.core.services import admin

    rt: Runtime = app.extensions["pelago"]
    slug = slug or f"t-{uuid.uuid4().hex[:10]}"
    now = rt.clock()
    with rt.sessions() as session:
        tenant = admin.create_tenant(session, slug=slug, name=slug, now=now)
        team = Team(tenant_id=tenant.id, name="Sales", description="", active=True, created_at=now)
        session.add(team)
        session.flush()
        handle = TenantHandle(app, tenant.id, slug, team.id)
        for who, role in (("admin", "admin"), ("manager", "manager"), ("rep", "rep"), ("rep2", "rep")):
            user = admin.create_user(session, tenant_id=tenant.id, email=f"{who}@{slug}.test", role=role,
                                     team_id=team.id, now=now)
            _, key = admin.create_api_key(session, user, now=now)
            handle.users[who] = user.id
            handle.keys[who] = key
        session.commit()
    return handle


@pytest.fixture
def tenant(app: Flask) -> TenantHandle:
    return new_tenant(app)


@pytest.fixture
def other_tenant(app: Flask) -> TenantHandle:
    return new_tenant(app)


@pytest.fixture
def operator_key(app: Flask) -> str:
    from pelago.core.services import admin

    rt: Runtime = app.extensions["pelago"]
    with rt.sessions() as session:
        user = admin.create_user(session, tenant_id=None, email=f"op-{uuid.uuid4().hex[:8]}@ops.test",
                                 role="operator", now=rt.clock())
        _, key = admin.create_api_key(session, user, now=rt.clock())
        session.commit()
    return key


@pytest.fixture
def redis_url() -> str:
    if not redis_available():
        if os.environ.get("PELAGO_REQUIRE_SERVICES") == "1":
            pytest.fail("Redis is required (PELAGO_REQUIRE_SERVICES=1) but not reachable")
        pytest.skip("Redis is not reachable")
    return REDIS_URL
