"""The ``pelago`` command line, run in-process with click's runner on the test database."""

from __future__ import annotations

import uuid

import pytest
from click.testing import CliRunner

from pelago.hostapp.cli import main


@pytest.fixture
def cli(db_url, engine, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("PELAGO_PLUGINS", "pool,scheduling,sms_nurture,settlement,recorder")
    monkeypatch.delenv("REDIS_URL", raising=False)

    def run(*args: str):
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        return result

    return run


def test_admin_flow_from_the_shell(cli, app):
    slug = f"cli-{uuid.uuid4().hex[:8]}"
    r = cli("tenants", "create", slug, "--name", "CLI Co", "--timezone", "Asia/Shanghai")
    assert r.exit_code == 0 and f"tenant {slug} created" in r.output
    assert cli("tenants", "create", slug).exit_code != 0  # slug taken: clear error, not a traceback
    r = cli("users", "create", "--tenant", slug, "--email", "boss@cli.test", "--role", "admin", "--team", "Sales")
    assert r.exit_code == 0, r.output
    r = cli("api-keys", "create", "--tenant", slug, "--user", "boss@cli.test")
    assert r.exit_code == 0, r.output
    key = r.stdout.strip().splitlines()[-1]
    assert key.startswith("pk_")
    client = app.test_client()
    got = client.get("/api/v1/leads", headers={"Authorization": f"Bearer {key}"})
    assert got.status_code == 200

    assert "recorder\t0.1.0\toff" in cli("plugins", "list", "--tenant", slug).output
    assert cli("plugins", "enable", "recorder", "--tenant", slug).exit_code == 0
    assert "recorder\t0.1.0\ton" in cli("plugins", "list", "--tenant", slug).output
    assert cli("plugins", "disable", "recorder", "--tenant", slug).exit_code == 0
    assert cli("plugins", "enable", "nosuch", "--tenant", slug).exit_code != 0


def test_operator_has_no_tenant(cli):
    email = f"op-{uuid.uuid4().hex[:6]}@ops.test"
    assert cli("users", "create", "--email", email, "--role", "operator").exit_code == 0
    r = cli("api-keys", "create", "--user", email)
    assert r.exit_code == 0 and r.stdout.strip().splitlines()[-1].startswith("pk_")
    r = cli("users", "create", "--email", "x@ops.test", "--role", "rep")
    assert r.exit_code != 0 and "needs a tenant" in r.output


def test_db_upgrade_and_scheduler_once(cli):
    r = cli("db", "upgrade")
    assert r.exit_code == 0 and "database is current" in r.output
    assert cli("scheduler", "--once").exit_code == 0


def test_unknown_plugin_in_deployment_is_a_clear_error(cli, monkeypatch):
    monkeypatch.setenv("PELAGO_PLUGINS", "pool,nosuch")
    r = cli("plugins", "list")
    assert r.exit_code != 0 and "nosuch" in r.output and "Traceback" not in r.output


@pytest.mark.redis
def test_worker_runs_queued_jobs_in_burst_mode(cli, redis_url, monkeypatch, db_url):
    """A queue of the test's own: the default ``pelago`` queue is shared by every run on this Redis
    (other test runs, benchmarks, workers), and a burst worker on it worked through their jobs too
    (about a minute when the suite ran beside others) before it could exit."""
    import uuid

    from pelago.core.jobs import RqQueue
    from pelago.core.runtime import Runtime
    from pelago.hostapp import Settings, build_runtime, create_app
    from tests.conftest import new_tenant
    from tests.plugins import recorder

    recorder.CALLS.clear()
    monkeypatch.setenv("REDIS_URL", redis_url)
    settings = Settings.from_env()
    rt: Runtime = build_runtime(settings)
    queue = f"pelago-test-{uuid.uuid4().hex[:8]}"
    rt.queue = RqQueue(rt, redis_url, queue)
    app = create_app(settings, runtime=rt)
    t = new_tenant(app)
    t.put("/api/v1/plugins/recorder", json={"enabled": True})
    lead = t.lead("13800138850")
    assert recorder.calls("lead_created", t.id) == []
    assert rt.queue.rq.count >= 1
    r = cli("worker", "--burst", "--queue", queue)
    assert r.exit_code == 0, r.output
    assert rt.queue.rq.count == 0
    # The worker forked a work horse per job; its effects are in the database.
    from sqlalchemy import select

    from pelago.core.models import Delivery, OutboxEvent

    with rt.sessions() as s:
        states = s.execute(
            select(OutboxEvent.name, Delivery.state).join(Delivery, Delivery.event_id == OutboxEvent.id)
            .where(OutboxEvent.tenant_id == t.id, Delivery.plugin == "recorder")
        ).all()
    assert ("lead_created", "delivered") in states
    assert lead["id"]


def test_plugins_add_their_commands(cli, monkeypatch):
    assert cli("recorder", "hello", "Li").output.strip() == "recorder says hello to Li"
    # a plugin command gets the runtime the CLI built from the environment (pass_runtime)
    assert cli("recorder", "tenants").output.strip().startswith("recorder is on for ")
    assert "recorder" in cli("--help").output
    monkeypatch.setenv("PELAGO_PLUGINS", "pool")
    assert cli("recorder", "hello", "Li").exit_code != 0  # not deployed: no such command


@pytest.mark.parametrize("slug", ["Bad Slug!", "UPPER", "-dash", "a", "ok\n", "x" * 64, "ünï"])
def test_tenant_slugs_are_checked_once_for_the_shell_and_the_api(cli, app, operator_key, slug):
    """Was: the shell made tenants the API would refuse, and that no X-Pelago-Tenant could name."""
    from sqlalchemy import func, select

    from pelago.core.models import Tenant

    rt = app.extensions["pelago"]
    with rt.sessions() as s:
        before = s.scalar(select(func.count()).select_from(Tenant))
    r = cli("tenants", "create", "--", slug)
    assert r.exit_code != 0 and "invalid slug" in r.output and "lowercase letters" in r.output, r.output
    api = app.test_client().post("/api/v1/tenants", json={"slug": slug},
                                 headers={"Authorization": f"Bearer {operator_key}"})
    assert api.status_code == 422 and "lowercase letters" in api.get_json()["errors"]["json"]["slug"][0]
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Tenant)) == before
