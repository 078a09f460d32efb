"""The embedded mode (``pelago serve`` on SQLite, no Redis) under concurrent writers (issue 14, findings 1 and 5).

Each test runs a real threaded HTTP server on 127.0.0.1 over its own SQLite
file, as ``make run`` does, whatever database the rest of the run uses.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import make_server

from pelago.core import migrate
from pelago.core.db import make_engine
from pelago.core.host import PluginHost
from pelago.core.jobs import ThreadQueue
from pelago.core.runtime import Runtime
from pelago.hostapp import Settings, create_app
from pelago.plugin import PluginSpec, hookimpl
from pelago.testing import new_tenant


@dataclass
class Served:
    url: str
    runtime: Runtime
    tenant: Any


@contextmanager
def embedded(tmp_path, *, write_wait: float = 15.0, extra: tuple[PluginSpec, ...] = (),
             plugins: tuple[str, ...] = ()) -> Iterator[Served]:
    """``pelago serve``'s setup: SQLite with the write gate, jobs on a background thread."""
    url = f"sqlite:///{tmp_path}/embedded.db"
    host = PluginHost((*plugins, *(s.name for s in extra)), strict=True, extra=extra)
    engine = make_engine(url, write_wait=write_wait)
    migrate.upgrade(engine, host)
    runtime = Runtime(host, engine, background=True)
    assert isinstance(runtime.queue, ThreadQueue)
    app = create_app(Settings(database_url=url), runtime=runtime)
    tenant = new_tenant(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{server.server_port}", runtime, tenant)
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()


def post(served: Served, path: str, body: dict[str, Any] | None, who: str = "admin",
         method: str = "POST") -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        served.url + path, data=None if body is None else json.dumps(body).encode(), method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {served.tenant.keys[who]}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def recorder(seen: list[int], *, wait: threading.Event | None = None, entered: threading.Event | None = None):
    """A plugin on for every tenant whose ``lead_created`` handler records the leads (after ``wait``)."""

    class Hooks:
        @staticmethod
        @hookimpl
        def lead_created(ctx, event):
            if entered is not None:
                entered.set()
            if wait is not None:
                wait.wait(timeout=60)  # a receiver that takes its time
            seen.extend(item["lead_id"] for item in event.items)

    return PluginSpec(name="newleads", title="New leads", description="records new leads", version="0.1.0",
                      core=">=0.1", hooks=Hooks, default_enabled=True)


def test_64_concurrent_writers_all_succeed(tmp_path):
    """Before, 20 parallel creates on ``make run`` gave 500s after 30 s: each request, its
    connection still checked out after commit, delivered the events inline and waited for a
    second connection while the others held the rest of the pool."""
    seen: list[int] = []
    with embedded(tmp_path, extra=(recorder(seen),)) as served:
        start = threading.Barrier(64)
        results: list[int] = []

        def writer(i: int) -> None:
            start.wait()
            status, _, _ = post(served, "/api/v1/leads", {"name": f"W{i}", "phone": f"+86 139 0000 {i:04d}"})
            results.append(status)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sorted(results) == [201] * 64
        served.runtime.queue.join()
        assert len(set(seen)) == 64
        with served.runtime.engine.connect() as conn:
            count = conn.exec_driver_sql(
                "SELECT count(*) FROM core_lead WHERE tenant_id = ?", (served.tenant.id,)).scalar()
        assert count == 64


def test_a_writer_queued_past_the_wait_gets_503_with_retry_after_and_writes_nothing(tmp_path):
    with embedded(tmp_path, write_wait=0.3) as served:
        with served.runtime.engine.connect() as holder:
            holder.exec_driver_sql("SELECT 1")  # BEGIN IMMEDIATE: holds the write lock (and the gate)
            status, headers, body = post(served, "/api/v1/leads", {"name": "Late", "phone": "+86 139 0000 0001"})
            assert status == 503 and int(headers["Retry-After"]) >= 1
            assert "busy" in body["message"]
        status, _, _ = post(served, "/api/v1/leads", {"name": "Late", "phone": "+86 139 0000 0001"})
        assert status == 201  # nothing was written the first time: no duplicate now


def test_a_slow_event_handler_does_not_hold_the_request(tmp_path):
    """Before, a 6 s tenant webhook made each claim and release take 6 s in the embedded mode."""
    entered, release = threading.Event(), threading.Event()
    seen: list[int] = []
    with embedded(tmp_path, extra=(recorder(seen, wait=release, entered=entered),)) as served:
        status, _, lead = post(served, "/api/v1/leads", {"name": "Fast", "phone": "+86 139 0000 0002"})
        assert status == 201  # answered while the handler has not finished
        assert entered.wait(timeout=30) and not seen
        release.set()
        served.runtime.queue.join()
        assert seen == [lead["id"]]


def test_the_gate_is_first_come_first_served(tmp_path):
    """Queued transactions get the write lock in arrival order (SQLite's own busy wait does not)."""
    engine = make_engine(f"sqlite:///{tmp_path}/gate.db", write_wait=30)
    order: list[int] = []
    with engine.connect() as holder:
        holder.exec_driver_sql("SELECT 1")
        threads = []
        for i in range(6):
            def take(i: int = i) -> None:
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
                    order.append(i)
                    conn.commit()

            t = threading.Thread(target=take)
            t.start()
            threads.append(t)
            # wait until this one is queued before starting the next: arrival order is known
            while _waiting(engine) < i + 1:
                pass
        holder.commit()
    for t in threads:
        t.join(timeout=30)
    engine.dispose()
    assert order == list(range(6))


def _waiting(engine) -> int:
    from pelago.core.db import gate_of

    return gate_of(engine).waiting


def test_a_slow_tenant_webhook_does_not_block_api_callers(tmp_path, monkeypatch):
    """Issue 14 review (finding 5 on SQLite): the pool's webhook was sent inside its delivery's
    transaction, which holds SQLite's write gate: while a receiver took its time, every API
    write queued behind it (here: past the 2 s wait, a 503). Now the POST is queued in that
    transaction and sent after it commits, so a claim and a release answer while it is pending.
    """
    import http.server

    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    entered, let_go = threading.Event(), threading.Event()
    got: list[str] = []

    class SlowReceiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["event"])
            entered.set()
            let_go.wait(timeout=30)  # a receiver that takes its time (bounded)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowReceiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        with embedded(tmp_path, write_wait=2.0, plugins=("pool",)) as served:
            status, _, _ = post(served, "/api/v1/plugins/pool", {"enabled": True, "settings": {
                "webhook_url": f"http://127.0.0.1:{receiver.server_address[1]}/hook"}}, method="PUT")
            assert status == 200
            _, _, pools = post(served, "/api/v1/pool/pools", None, method="GET")
            pool_id = next(p["id"] for p in pools["items"] if p["is_default"])
            status, _, lead = post(served, f"/api/v1/pool/pools/{pool_id}/leads",
                                   {"name": "Slow", "phone": "+86 139 0000 0003"})
            assert status == 201
            status, _, body = post(served, "/api/v1/pool/claim", {"lead_ids": [lead["id"]]}, who="rep")
            assert status == 200, body
            assert entered.wait(timeout=30)  # the receiver has the claim and is taking its time
            # Writes while the webhook is pending: answered, not queued behind it.
            status, _, body = post(served, "/api/v1/pool/release", {"lead_ids": [lead["id"]], "reason": "x"},
                                   who="rep")
            assert status == 200, body
            status, _, body = post(served, "/api/v1/pool/claim", {"lead_ids": [lead["id"]]}, who="rep2")
            assert status == 200, body
            assert got == ["pool.claimed"] and not let_go.is_set()
            let_go.set()
            served.runtime.queue.join()
            assert got == ["pool.claimed", "pool.released", "pool.claimed"]
    finally:
        let_go.set()
        receiver.shutdown()
        receiver.server_close()
