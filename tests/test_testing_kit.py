"""``pelago.testing``, the pytest plugin plugin authors (and this repository) test with."""

from __future__ import annotations

from typing import Any

# Imported before any pytester fixture: pytester restores sys.modules after each test, so a
# psycopg first imported inside one (``_test_databases``) would be dropped and imported
# anew, while psycopg's compiled part is not: it would go on raising the first import's
# OperationalError, which SQLAlchemy no longer recognises (and so does not wrap).
import psycopg  # noqa: F401
import pytest
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import Column, Integer, Table, create_engine, text

from pelago.core.db import Base
from pelago.core.host import PluginHost
from pelago.core.runtime import Runtime
from pelago.core.spec import PluginSpec
from pelago.hostapp import Settings, create_app
from pelago.testing import (
    _db,
    assert_models_match_migrations,
    check_routes,
    deliver_events,
    new_tenant,
    run_periodic,
)
from tests.plugins import failing, recorder

pytest_plugins = ("pytester",)


pytestmark = pytest.mark.usefixtures("test_plugins_forget")


# --- options ---------------------------------------------------------------------------


def test_the_database_comes_from_the_option_else_the_environment_else_sqlite(pytester, monkeypatch):
    monkeypatch.delenv("PELAGO_TEST_DB", raising=False)
    monkeypatch.delenv("PELAGO_TEST_PG", raising=False)
    config = pytester.parseconfigure()
    assert (config.option.pelago_db, config.option.pelago_pg_url) == ("sqlite", _db.DEFAULT_PG_URL)

    monkeypatch.setenv("PELAGO_TEST_DB", "postgresql")
    monkeypatch.setenv("PELAGO_TEST_PG", "postgresql://u@db.example:5433/x")
    config = pytester.parseconfigure()
    assert (config.option.pelago_db, config.option.pelago_pg_url) == ("postgresql", "postgresql://u@db.example:5433/x")

    config = pytester.parseconfigure("--pelago-db=sqlite", "--pelago-pg-url=postgresql://v@h/y")
    assert (config.option.pelago_db, config.option.pelago_pg_url) == ("sqlite", "postgresql://v@h/y")


@pytest.mark.parametrize("given", [("--pelago-db=oracle",), ()], ids=["option", "environment"])
def test_an_unknown_database_is_a_usage_error(pytester, monkeypatch, given):
    monkeypatch.setenv("PELAGO_TEST_DB", "oracle")
    with pytest.raises(pytest.UsageError, match="must be sqlite or postgresql, not 'oracle'"):
        pytester.parseconfigure(*given)


def test_the_markers_are_registered(pytester):
    config = pytester.parseconfigure()
    markers = config.getini("markers")
    assert any(m.startswith("postgres:") for m in markers) and any(m.startswith("redis:") for m in markers)


# --- a plugin author's test file, run on its own ---------------------------------------

AUTHOR_CONFTEST = """
import pytest

@pytest.fixture(scope="session")
def pelago_migrated_plugins():
    return ("lead_score",)
"""

AUTHOR_TESTS = """
import pytest

from pelago.testing import TenantHandle, assert_models_match_migrations, run_periodic


def test_app_tenants_and_roles(app, tenant, other_tenant, operator_key, clock):
    assert isinstance(tenant, TenantHandle) and tenant.runtime.clock is clock
    lead = tenant.lead("13800138000")
    assert tenant.get(f"/api/v1/leads/{lead['id']}").status_code == 200
    assert other_tenant.get(f"/api/v1/leads/{lead['id']}").status_code == 404
    assert tenant.get(f"/api/v1/leads/{lead['id']}", "rep").status_code == 404  # not her lead
    r = app.test_client().get("/api/v1/tenants", headers={"Authorization": f"Bearer {operator_key}"})
    assert r.status_code == 200


def test_the_plugins_default_to_the_migrated_ones(app, pelago_plugins):
    assert tuple(app.extensions["pelago"].host.specs) == tuple(pelago_plugins) == ("lead_score",)


def test_the_plugin_works_and_its_job_runs(tenant):
    assert tenant.put("/api/v1/plugins/lead_score", json={"enabled": True}).status_code == 200
    lead = tenant.lead("13800138001", source="referral")
    assert tenant.get(f"/api/v1/lead_score/leads/{lead['id']}").status_code == 200
    assert run_periodic(tenant.runtime, "lead_score", "decay", tenant.id) == {tenant.id: "done"}


def test_the_cli(pelago_cli, tenant):
    r = pelago_cli("tenants", "list")
    assert r.exit_code == 0 and tenant.slug in r.output


def test_models_match_migrations(engine, pelago_migration_host, pelago_db):
    assert engine.dialect.name == pelago_db
    print("PELAGO-DATABASE", engine.url.database)  # the test below checks that it is dropped afterwards
    assert_models_match_migrations(engine, pelago_migration_host)


@pytest.mark.postgres
def test_only_on_postgresql(pelago_db):
    assert pelago_db == "postgresql"
"""


def _test_databases(url: str) -> set[str]:
    engine = create_engine(_db.psycopg_url(url))
    try:
        with engine.connect() as conn:
            return set(conn.scalars(text("SELECT datname FROM pg_database WHERE datname LIKE 'pelago_test_%'")))
    finally:
        engine.dispose()


def test_a_plugin_authors_tests_run_on_a_database_of_their_own(pytester, pelago_db, pelago_pg_url):
    """In a separate process, as in a plugin's repository: only the installed plugins, no conftest of ours."""
    pytester.makeconftest(AUTHOR_CONFTEST)
    pytester.makepyfile(test_author=AUTHOR_TESTS)
    result = pytester.runpytest_subprocess(f"--pelago-db={pelago_db}", f"--pelago-pg-url={pelago_pg_url}",
                                           "-p", "no:cacheprovider", "-rs", "-s")
    if pelago_db == "postgresql":
        result.assert_outcomes(passed=6)
        # Its own database was dropped (by name: other runs on the server make and drop theirs meanwhile).
        named = [line.split()[-1] for line in result.outlines if "PELAGO-DATABASE" in line]
        assert len(named) == 1 and named[0].startswith("pelago_test_"), result.outlines
        assert named[0] not in _test_databases(pelago_pg_url)
    else:
        result.assert_outcomes(passed=5, skipped=1)
        result.stdout.fnmatch_lines(["*PostgreSQL-only*"])


# --- missing services ------------------------------------------------------------------

DEAD_PG = "postgresql://postgres@127.0.0.1:9/nothing"


def test_an_unreachable_postgresql_skips_unless_services_are_required(monkeypatch):
    monkeypatch.delenv("PELAGO_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is not reachable at " + DEAD_PG):
        with _db.postgresql_database(DEAD_PG):
            pass
    monkeypatch.setenv("PELAGO_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="PELAGO_REQUIRE_SERVICES=1"):
        with _db.postgresql_database(DEAD_PG):
            pass


def test_an_unreachable_redis_skips_unless_services_are_required(monkeypatch):
    monkeypatch.setenv("PELAGO_TEST_REDIS", "redis://127.0.0.1:9/0")
    monkeypatch.delenv("PELAGO_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Redis is not reachable"):
        _db.require_redis()
    monkeypatch.setenv("PELAGO_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="Redis is not reachable"):
        _db.require_redis()


# --- models and migrations -------------------------------------------------------------


@pytest.fixture
def unmigrated():
    """Tables in the models that no migration makes, taken out of the metadata again afterwards."""
    made: list[Table] = []

    def table(name: str) -> Table:
        made.append(Table(name, Base.metadata, Column("id", Integer, primary_key=True), Column("tenant_id", Integer)))
        return made[-1]

    yield table
    for t in made:
        Base.metadata.remove(t)


def test_a_model_without_a_migration_fails_and_is_named(engine, pelago_migration_host, unmigrated):
    assert_models_match_migrations(engine, pelago_migration_host)
    unmigrated("recorder_forgotten")
    with pytest.raises(AssertionError) as failed:
        assert_models_match_migrations(engine, pelago_migration_host)
    assert "add_table recorder_forgotten: in the models, not made by the migrations" in str(failed.value)


def test_only_the_hosts_plugins_are_compared(engine, unmigrated):
    unmigrated("nosuch_forgotten")  # a plugin the host does not have: not its business
    assert_models_match_migrations(engine, PluginHost(("recorder",), strict=True))


# --- events and periodic jobs, inline --------------------------------------------------


class _Parked:
    """A queue that keeps jobs instead of running them (a worker that is not running)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, dict[str, Any]]] = []

    def enqueue(self, name: str, **kwargs: Any) -> None:
        self.jobs.append((name, kwargs))


def test_deliver_events_delivers_what_is_pending_now(make_app):
    app = make_app(("recorder", "failing"))
    t, other = new_tenant(app), new_tenant(app)
    for tenant in (t, other):
        for plugin in ("recorder", "failing"):
            assert tenant.put(f"/api/v1/plugins/{plugin}", json={"enabled": True}).status_code == 200
    rt = t.runtime
    rt.queue = _Parked()  # type: ignore[assignment]
    lead = t.lead("13800138020")
    other.lead("13800138021")
    assert "deliver" in {name for name, _ in rt.queue.jobs}  # handed to a queue nobody works
    assert recorder.calls("lead_created", t.id) == [] and failing.ATTEMPTS == []

    counts = deliver_events(rt, tenant_id=t.id)
    assert counts == {"delivered": 1, "failed": 1, "skipped": 0}
    assert [c["items"][0]["lead_id"] for c in recorder.calls("lead_created", t.id)] == [lead["id"]]
    assert recorder.calls("lead_created", other.id) == []  # another tenant's: left alone
    assert len(failing.ATTEMPTS) == 1  # a failing plugin is tried once per call, backoff or not
    assert deliver_events(rt, tenant_id=t.id) == {"delivered": 0, "failed": 1, "skipped": 0}
    assert len(failing.ATTEMPTS) == 2 and len(recorder.calls("lead_created", t.id)) == 1


def test_run_periodic_runs_a_job_now_for_the_tenants_that_have_the_plugin(make_app, clock):
    app = make_app(("recorder",))
    on, off = new_tenant(app), new_tenant(app)
    assert on.put("/api/v1/plugins/recorder", json={"enabled": True}).status_code == 200
    rt = on.runtime
    assert run_periodic(rt, "recorder", "tick", on.id) == {on.id: "done"}
    assert run_periodic(rt, "recorder", "tick", on.id) == {on.id: "done"}  # its period does not matter
    assert run_periodic(rt, "recorder", "tick", off.id) == {off.id: "skipped"}
    everyone = run_periodic(rt, "recorder", "tick")
    assert everyone[on.id] == "done" and off.id not in everyone
    assert recorder.calls("periodic.tick", on.id) == [clock()] * 3 and recorder.calls("periodic.tick", off.id) == []
    with pytest.raises(LookupError, match="no periodic job 'tock' .*it has: tick"):
        run_periodic(rt, "recorder", "tock", on.id)
    with pytest.raises(LookupError, match="plugin 'pool' is not in this runtime"):
        run_periodic(rt, "pool", "sweep", on.id)


# --- the CLI ---------------------------------------------------------------------------


def test_pelago_cli_runs_on_the_apps_runtime_with_its_plugins(pelago_cli, make_app, tenant):
    r = pelago_cli("tenants", "list")
    assert r.exit_code == 0 and tenant.slug in r.output  # the app fixture's database
    app = make_app(("recorder",))
    assert pelago_cli("recorder", "hello", "kit", app=app).output == "recorder says hello to kit\n"
    r = pelago_cli("plugins", "list", "--tenant", tenant.slug, app=app)
    assert r.exit_code == 0 and "recorder" in r.output and "pool" not in r.output
    assert pelago_cli("recorder", "hello", "kit").exit_code != 0  # not a plugin of the app fixture


# --- generated requests against a plugin's routes --------------------------------------


class Pong(Schema):
    tenant = fields.String(required=True)


def _app_with_routes(db_url: str, engine: Any, view: Any) -> Any:
    blp = Blueprint("kitroutes", __name__)
    blp.route("/pong/<int:n>", methods=["GET"])(blp.response(200, Pong)(view))
    spec = PluginSpec(name="kitroutes", title="Kit routes (test)", blueprint=blp, default_enabled=True)
    runtime = Runtime(PluginHost(("kitroutes",), extra=[spec], strict=True), engine)
    app = create_app(Settings(database_url=db_url), runtime=runtime)
    app.config["TESTING"] = True
    return app


def test_check_routes_passes_routes_that_keep_their_spec(db_url, engine):
    def pong(n: int) -> Any:
        return {"tenant": str(n)}

    app = _app_with_routes(db_url, engine, pong)
    t = new_tenant(app)
    assert check_routes(app, "/api/v1/kitroutes", t.headers(), values={"n": [7]}, max_examples=5) == [
        "GET /api/v1/kitroutes/pong/{n}"
    ]


def test_check_routes_fails_on_a_server_error_and_names_the_operation(db_url, engine):
    seen: list[int] = []

    def pong(n: int) -> Any:
        seen.append(n)
        return ({"tenant": "x"}, 503) if n == 7 else {"tenant": "x"}

    app = _app_with_routes(db_url, engine, pong)
    t = new_tenant(app)
    with pytest.raises(AssertionError, match=r"1 of 1 operations failed:\s+GET /api/v1/kitroutes/pong/\{n\}"):
        check_routes(app, "/api/v1/kitroutes", t.headers(), values={"n": [7]}, max_examples=5)
    assert 7 in seen  # the known value was used


def test_check_routes_needs_an_operation_under_the_prefix(app, tenant):
    with pytest.raises(AssertionError, match="no operation under '/api/v1/nosuch'"):
        check_routes(app, "/api/v1/nosuch", tenant.headers())
