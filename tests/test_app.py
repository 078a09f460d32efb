"""The app around the API: health, interactive docs that work offline, JSON as people read it."""

from __future__ import annotations


def test_health_lists_the_deployed_plugins(app):
    body = app.test_client().get("/healthz").get_json()
    assert body["status"] == "ok" and body["plugins"] == ["pool", "scheduling", "sms_nurture", "settlement",
                                                           "conversions"]


def test_docs_are_served_with_local_assets(app):
    client = app.test_client()
    assert client.get("/").headers["Location"].endswith("/api/docs")
    page = client.get("/api/docs").get_data(as_text=True)
    assert "/api/swagger-ui/swagger-ui-bundle.js" in page and "https://" not in page.split("<body")[0]
    asset = client.get("/api/swagger-ui/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.data) > 100_000
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.") and spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_chinese_text_is_not_escaped(tenant):
    r = tenant.post("/api/v1/leads", json={"name": "张伟", "phone": "13800138990"})
    assert "张伟" in r.get_data(as_text=True)


def _app_on(url: str, plugins: tuple[str, ...] = ("pool",), redis_url: str | None = None):
    from pelago.core.db import make_engine
    from pelago.core.host import PluginHost
    from pelago.core.runtime import Runtime
    from pelago.hostapp import Settings, create_app

    runtime = Runtime(PluginHost(plugins, strict=True), make_engine(url))
    return create_app(Settings(database_url=url, redis_url=redis_url), runtime=runtime), runtime


def test_ready_only_when_the_schema_is_at_head(tmp_path):
    """Was: /healthz said ok on an unmigrated database while every API call was a 500."""
    from alembic import command

    from pelago.core import migrate

    app, runtime = _app_on(f"sqlite:///{tmp_path / 'fresh.db'}")
    client = app.test_client()
    assert client.get("/healthz").status_code == 200  # the process is up: still says so
    r = client.get("/readyz")
    body = r.get_json()
    assert r.status_code == 503 and body["status"] == "not ready", body
    assert len(body["problems"]) == 1 and "core@head" in body["problems"][0] and "pool@head" in body["problems"][0]
    assert "pelago db upgrade" in body["problems"][0]

    with runtime.engine.begin() as conn:  # the core migrated, the deployed plugin not yet
        command.upgrade(migrate.alembic_config(runtime.engine, runtime.host, conn), "core@head")
    problems = client.get("/readyz").get_json()["problems"]
    assert len(problems) == 1 and "pool@head" in problems[0] and "core@head" not in problems[0]

    migrate.upgrade(runtime.engine, runtime.host)
    r = client.get("/readyz")
    assert r.status_code == 200 and r.get_json()["status"] == "ready" and r.get_json()["problems"] == []
    assert client.get("/readyz").status_code == 200  # the scripts are read once, the database each time


def test_not_ready_when_the_database_or_redis_does_not_answer(tmp_path, engine, db_url):
    app, _ = _app_on("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    r = app.test_client().get("/readyz")
    assert r.status_code == 503 and r.get_json()["problems"][0].startswith("database unreachable: ")
    assert "secret" not in r.get_data(as_text=True)

    app, _ = _app_on(db_url, plugins=("pool", "scheduling", "sms_nurture", "settlement", "conversions"),
                     redis_url="redis://:secret@127.0.0.1:1/0")
    r = app.test_client().get("/readyz")
    body = r.get_json()
    assert r.status_code == 503 and len(body["problems"]) == 1, body
    assert body["problems"][0].startswith("redis unreachable: ") and "secret" not in r.get_data(as_text=True)


def test_ready_on_the_test_database(app):
    r = app.test_client().get("/readyz")
    assert r.status_code == 200 and r.get_json()["problems"] == []
