"""Faults with real processes (issue 14, "Proven by tests: Faults").

- An rq worker (the real ``pelago worker``) killed with SIGKILL in the middle
  of an event delivery: every event is delivered at least once, and the
  handler's effects happen once. The same with its work horse in the middle
  of an import's batch: the lease hands the import to a new worker, which
  goes on after the last committed batch, every row once.
- A PostgreSQL backend terminated (``pg_terminate_backend``) in the middle of
  a request: a clean 503 with ``Retry-After``, nothing of the request written,
  and the pool serves the next request; a PostgreSQL that does not answer: 503.
- Redis stopped (a private ``redis-server``): writes still succeed, the outbox
  holds their events, and they are delivered once Redis is back.

The tests with worker processes or PostgreSQL run in the PostgreSQL pass (as
the production mode does). No sleeps: every wait is a bounded loop on a real
condition (a Redis list, a row in ``pg_stat_activity``, a port that answers).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, func, select, text

from pelago.core.host import PluginHost
from pelago.core.models import Activity, Delivery, Lead, OutboxEvent, PeriodicRun, Touch
from pelago.core.runtime import Runtime
from pelago.hostapp import Settings, create_app
from pelago.testing import new_tenant, scheduler_tick
from tests.plugins import crashy

ROOT = Path(__file__).resolve().parent.parent


def worker_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def start_worker(db_url: str, redis_url: str, queue: str, **env: str) -> subprocess.Popen[bytes]:
    """``pelago worker --burst --queue QUEUE`` with the crashy plugin, in a process group of its own."""
    return subprocess.Popen([sys.executable, "-m", "tests.plugins.crashy", db_url, redis_url, queue],
                            cwd=ROOT, env=worker_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def run_worker(db_url: str, redis_url: str, queue: str, **env: str) -> None:
    proc = start_worker(db_url, redis_url, queue, **env)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()[-3000:]


def crashy_on(app) -> object:
    t = new_tenant(app)
    assert t.put("/api/v1/plugins/crashy", json={"enabled": True}).status_code == 200
    return t


def deliveries(t) -> dict[int, tuple[str, int]]:
    """``{event_id: (state, attempts)}`` of the tenant's crashy deliveries."""
    with t.runtime.sessions() as s:
        rows = s.execute(select(Delivery.event_id, Delivery.state, Delivery.attempts)
                         .where(Delivery.tenant_id == t.id, Delivery.plugin == "crashy")).all()
    return {e: (state, attempts) for e, state, attempts in rows}


def crashy_notes(t) -> list[tuple[int, str]]:
    with t.runtime.sessions() as s:
        return sorted(s.execute(select(Activity.lead_id, Activity.note)
                                .where(Activity.tenant_id == t.id, Activity.note.like("crashy saw event %"))).all())


# --- (a) a worker killed with SIGKILL mid-delivery ----------------------------------------


@pytest.mark.postgres
def test_a_worker_killed_mid_delivery_delivers_every_event_with_effects_once(make_app, db_url, redis_url, engine):
    from redis import Redis

    queue = f"faults-{uuid.uuid4().hex[:8]}"
    r = Redis.from_url(redis_url)
    app = make_app(("crashy",), redis=True, queue_name=queue, extra=(crashy.plugin,))
    t = crashy_on(app)
    leads = [t.lead(f"1390020000{k}")["id"] for k in range(3)]
    assert r.llen(f"rq:queue:{queue}") == 3  # three deliver jobs waiting; nothing delivered yet
    control = {"PELAGO_FAULTS_REDIS": redis_url, "PELAGO_FAULTS_PREFIX": queue}
    r.set(f"{queue}:block", 1)
    try:
        proc = start_worker(db_url, redis_url, queue, **control)
        inside = None
        for _ in range(60):  # the handler says it is inside its transaction (BLPOP waits up to 1 s)
            got = r.blpop([f"{queue}:inside"], timeout=1)
            if got is not None:
                inside = json.loads(got[1])
                break
            assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
        assert inside is not None, "the worker never reached the handler"
        # The worker, then its work horse (rq puts it in a session of its own), which is
        # inside the delivery's transaction: both vanish, as with a lost machine.
        assert inside["pid"] != proc.pid
        os.killpg(proc.pid, signal.SIGKILL)
        os.kill(inside["pid"], signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        r.delete(f"{queue}:block")

        # PostgreSQL rolls the dead backend's transaction back once it sees the socket closed.
        deadline = time.monotonic() + 30
        with engine.connect() as conn:
            while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"),
                               {"p": inside["backend"]}).scalar():
                assert time.monotonic() < deadline, "the killed worker's backend is still there"
                time.sleep(0.05)
        first = inside["event_id"]
        state = deliveries(t)
        assert state[first] == ("pending", 0)  # not delivered, not counted: the kill rolled it back
        assert crashy_notes(t) == []  # the handler's database write went with it
        assert [int(x) for x in r.lrange(f"{queue}:calls", 0, -1)] == [first]
        assert int(r.get(f"{queue}:effects")) == 1  # its outside effect did happen, once

        # The scheduler's tick enqueues the retry job; a new worker runs what is left.
        scheduler_tick(t.runtime, t.id)
        run_worker(db_url, redis_url, queue, **control)

        state = deliveries(t)
        assert set(state.values()) == {("delivered", 1)} and len(state) == 3
        calls = [int(x) for x in r.lrange(f"{queue}:calls", 0, -1)]
        assert sorted(set(calls)) == sorted(state) and calls.count(first) == 2  # at least once: twice for one
        assert int(r.get(f"{queue}:effects")) == 3  # but each outside effect once
        assert crashy_notes(t) == sorted((lead, crashy.note(e)) for lead, e in zip(leads, sorted(state), strict=True))
    finally:
        r.delete(*[k for k in r.scan_iter(f"{queue}:*")])
        app.extensions["pelago"].queue.rq.delete(delete_jobs=True)


@pytest.mark.postgres
def test_a_work_horse_killed_mid_import_is_resumed_by_the_lease_with_every_row_once(
    make_app, db_url, redis_url, engine, clock
):
    """The real ``pelago worker`` runs an import job in its rq work horse; both are SIGKILLed in the
    middle of the third batch's transaction. Two batches stay committed, the third is rolled back,
    and once the lease has run out the scheduler's tick hands the import to a new worker, which
    goes on after row 10: every row imported once, the import ``done``."""
    from redis import Redis

    from pelago.core.models import Import
    from pelago.core.services import imports as svc

    queue = f"faults-{uuid.uuid4().hex[:8]}"
    r = Redis.from_url(redis_url)
    app = make_app(("crashy",), redis=True, queue_name=queue, extra=(crashy.plugin,))
    t = crashy_on(app)
    rows = "name,phone\n" + "".join(f"n{i},1390031{i:04d}\n" for i in range(23))
    with t.runtime.tenant_context(t.id) as ctx:
        import_id = svc.create_import(ctx, filename="faults.csv", content=rows.encode()).id
    t.runtime.queue.enqueue("import", tenant_id=t.id, import_id=import_id)
    control = {"PELAGO_FAULTS_REDIS": redis_url, "PELAGO_FAULTS_PREFIX": queue, "PELAGO_FAULTS_IMPORT_BATCH": "5"}
    r.set(f"{queue}:block_import", 3)  # stall in the third batch

    def imported() -> tuple[str, int, int, int]:
        with t.runtime.tenant_session(t.id) as s:
            imp = s.get(Import, import_id)
            leads = s.scalar(select(func.count()).select_from(Lead).where(Lead.tenant_id == t.id))
            return imp.status, imp.processed_rows, imp.attempts, leads

    try:
        proc = start_worker(db_url, redis_url, queue, **control)
        inside = None
        for _ in range(60):
            got = r.blpop([f"{queue}:inside"], timeout=1)
            if got is not None:
                inside = json.loads(got[1])
                break
            assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
        assert inside is not None and inside["import"], "the worker never reached the third batch"
        assert inside["pid"] != proc.pid  # rq's work horse, a process of its own
        os.killpg(proc.pid, signal.SIGKILL)
        os.kill(inside["pid"], signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        r.delete(f"{queue}:block_import")
        deadline = time.monotonic() + 30
        with engine.connect() as conn:
            while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"),
                               {"p": inside["backend"]}).scalar():
                assert time.monotonic() < deadline, "the killed horse's backend is still there"
                time.sleep(0.05)
        assert imported() == ("running", 10, 1, 10)  # two batches kept, the third rolled back

        # Once the lease ran out (moved back here rather than waited for), the tick resumes it;
        # within the lease nothing takes it over (tests/test_import_lease.py).
        with engine.begin() as conn:
            conn.execute(text("UPDATE core_import SET lease_until = :t WHERE id = :id"),
                         {"t": min(clock(), datetime.now(timezone.utc)) - svc.LEASE, "id": import_id})
        scheduler_tick(t.runtime, t.id)
        run_worker(db_url, redis_url, queue, **control)
        assert imported() == ("done", 23, 2, 23)
        with t.runtime.sessions() as s:
            phones = s.scalars(select(Lead.phone).where(Lead.tenant_id == t.id)).all()
        assert len(phones) == len(set(phones)) == 23
    finally:
        r.delete(*[k for k in r.scan_iter(f"{queue}:*")])
        app.extensions["pelago"].queue.rq.delete(delete_jobs=True)


# --- (b) a PostgreSQL backend terminated mid-request -----------------------------------------


@contextmanager
def terminate_on(engine, statement: str) -> Iterator[list[int]]:
    """Terminate the backend that is about to run the first statement containing ``statement``.

    Another connection calls ``pg_terminate_backend`` and waits for the
    backend to exit; the statement then runs on a dead connection.
    """
    killed: list[int] = []
    admin = create_engine(engine.url, isolation_level="AUTOCOMMIT")

    def before(conn, cursor, sql, params, context, executemany):
        if killed or statement not in sql:
            return
        pid = conn.connection.dbapi_connection.info.backend_pid
        with admin.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:p, 10000)"), {"p": pid}).scalar()
        killed.append(pid)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield killed
    finally:
        event.remove(engine, "before_cursor_execute", before)
        admin.dispose()


@pytest.mark.postgres
def test_a_backend_terminated_mid_request_answers_503_and_writes_nothing(tenant, engine, caplog):
    phone = "13900210001"
    with caplog.at_level(logging.WARNING), terminate_on(engine, "INSERT INTO core_touch") as killed:
        r = tenant.post("/api/v1/leads", json={"name": "half", "phone": phone})
    assert killed, "the request never reached its touch insert"
    assert r.status_code == 503, r.get_json()
    assert r.headers["Retry-After"] == "5"
    assert r.get_json()["message"] == "the database is unavailable; try again"
    assert "answered 503" in caplog.text
    with tenant.runtime.sessions() as s:  # the lead row was inserted before the kill: rolled back with it
        assert s.scalar(select(func.count()).select_from(Lead).where(Lead.tenant_id == tenant.id,
                                                                      Lead.phone == "+86" + phone)) == 0
        assert s.scalar(select(func.count()).select_from(Touch).where(Touch.tenant_id == tenant.id)) == 0
        assert s.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.tenant_id == tenant.id, OutboxEvent.name == "lead_created")) == 0
    again = tenant.post("/api/v1/leads", json={"name": "whole", "phone": phone})  # the pool recovered
    assert again.status_code == 201, again.get_json()
    assert tenant.get(f"/api/v1/leads/{again.get_json()['id']}").get_json()["name"] == "whole"


@pytest.mark.postgres
def test_a_read_whose_backend_is_terminated_answers_503(tenant, engine):
    lead = tenant.lead("13900210002")
    with terminate_on(engine, "FROM core_lead") as killed:
        r = tenant.get(f"/api/v1/leads/{lead['id']}")
    assert killed and r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert tenant.get(f"/api/v1/leads/{lead['id']}").status_code == 200


@pytest.mark.postgres
def test_every_pooled_connection_terminated_between_requests_is_replaced(tenant, engine):
    """A PostgreSQL restart or failover: the checkout check finds the dead connections, no error is seen."""
    tenant.lead("13900210003")
    database = engine.url.database
    with engine.connect() as conn:
        mine = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    admin = create_engine(engine.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        ended = conn.execute(text(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
            "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": database}).scalar()
    admin.dispose()
    assert ended >= 1 and mine is not None
    assert tenant.post("/api/v1/leads", json={"phone": "13900210004"}).status_code == 201
    assert tenant.get("/api/v1/leads").status_code == 200


def test_a_database_that_does_not_answer_gives_503_not_500(tmp_path):
    """PostgreSQL down (nothing listens on its port): every route that needs it answers 503, /readyz too."""
    pytest.importorskip("psycopg")
    from pelago.core.db import make_engine

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/pelago"  # a free port: connection refused
    runtime = Runtime(PluginHost((), strict=True), make_engine(url))
    app = create_app(Settings(database_url=url), runtime=runtime)
    client = app.test_client()
    key = "pk_" + "a" * 12 + "_" + "b" * 43
    r = client.get("/api/v1/leads", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.get_json()
    assert r.get_json()["message"] == "the database is unavailable; try again"
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_transient_database_errors_are_told_apart_from_real_failures():
    from sqlalchemy.exc import OperationalError

    from pelago.hostapp.errors import transient

    class Orig(Exception):
        def __init__(self, message: str, sqlstate: str | None = None) -> None:
            super().__init__(message)
            self.sqlstate = sqlstate

    def err(message: str, sqlstate: str | None = None, invalidated: bool = False) -> OperationalError:
        return OperationalError("SELECT 1", {}, Orig(message, sqlstate), connection_invalidated=invalidated)

    assert transient(err("database is locked")) == "busy"
    assert transient(err("server closed the connection unexpectedly", invalidated=True)) == "unavailable"
    assert transient(err("terminating connection due to administrator command", "57P01")) == "unavailable"
    assert transient(err("connection refused", "08006")) == "unavailable"
    assert transient(err("could not serialize access", "40001")) == "busy"
    assert transient(err("deadlock detected", "40P01")) == "busy"
    assert transient(err("canceling statement due to statement timeout", "57014")) == "busy"
    assert transient(err("no such table: core_lead")) is None  # a real failure stays a 500 (SQLite: no sqlstate)
    assert transient(err("some other failure", "58000")) is None


# --- (c) Redis stopped ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A ``redis-server`` of this test's own on a free port, without persistence, to stop and start."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = tmp_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from redis import Redis

        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                assert self.proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.postgres  # the production mode (Redis, rq workers) runs on PostgreSQL
@pytest.mark.redis
def test_with_redis_stopped_writes_succeed_and_are_delivered_once_it_is_back(
        engine, db_url, clock, private_redis, caplog):
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    runtime = Runtime(PluginHost(("crashy",), strict=True, extra=(crashy.plugin,)), engine,
                      redis_url=private_redis.url, clock=clock, queue_name=queue)
    app = create_app(Settings(database_url=db_url, redis_url=private_redis.url), runtime=runtime)
    app.config["TESTING"] = True
    t = crashy_on(app)
    assert app.test_client().get("/readyz").status_code == 200

    private_redis.stop()
    with caplog.at_level(logging.ERROR, logger="pelago"):
        created = [t.post("/api/v1/leads", json={"phone": f"1390022000{k}"}) for k in range(2)]
    assert [c.status_code for c in created] == [201, 201]  # the writes do not need Redis
    assert caplog.text.count("could not hand events") == 2
    assert {state for state, _ in deliveries(t).values()} == {"pending"} and len(deliveries(t)) == 2
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503 and "redis" in json.dumps(ready.get_json())

    # The scheduler's tick cannot hand anything over either; it gives its claim of the period back.
    with pytest.raises(Exception, match="(?i)connect"):
        scheduler_tick(runtime, t.id)
    with runtime.sessions() as s:
        assert s.scalar(select(PeriodicRun.last_run_at).where(
            PeriodicRun.tenant_id == t.id, PeriodicRun.job == "crashy.tick")) < clock()

    private_redis.start()  # back, empty: whatever was queued before is gone, the outbox is not
    assert scheduler_tick(runtime, t.id) == [(t.id, "crashy.tick")]  # the same period, started now
    run_worker(db_url, private_redis.url, queue)
    state = deliveries(t)
    assert set(state.values()) == {("delivered", 1)} and len(state) == 2
    leads = sorted(c.get_json()["id"] for c in created)
    assert crashy_notes(t) == sorted((lead, crashy.note(e)) for lead, e in zip(leads, sorted(state), strict=True))
