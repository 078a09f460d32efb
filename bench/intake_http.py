"""intake_http: signed webhook intake over HTTP versus a bare Flask + SQLAlchemy endpoint.

Two gunicorn servers with the same settings (2 workers, gthread with 4
threads each, keep-alive) on a fresh database: the real Pelago app
(``pelago.hostapp.wsgi:app``, ``POST /api/v1/intake/{key}`` of a channel of a
tenant with auto-routing to a team of 10 reps, round robin) and
bench/_bare_app.py, whose ``POST /intake`` inserts the same lead as one
``core_lead`` row. The load generator is 4 client processes, each with one
keep-alive ``http.client`` connection, sending a fixed number of requests
(``--rows`` in all per server), every one with a distinct phone and external
id; Pelago's are signed with the channel's secret (signatures are computed
before the clock starts). The servers take turns, twice each (Pelago, bare,
Pelago, bare), and each side's throughput is its requests over its time.
ratio = Pelago requests/s / bare requests/s.

    python -m bench.intake_http [--rows 8000] [--db postgresql|sqlite]
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    arguments,
    bench_database,
    cn_e164,
    kinds,
    lead_name,
    log,
    make_runtime,
    make_tenant,
    result,
)

GOAL = ">=0.5"
WORKERS = 2
THREADS = 4
CLIENTS = 4
ROUNDS = 2
WARMUP = 50  # requests per client before each server's first round (fewer in small runs)
SOURCES = ("douyin", "baidu", "wechat", "xiaohongshu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gunicorn(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``app`` under gunicorn with the settings both sides share."""
    command = [
        str(Path(sys.executable).with_name("gunicorn")), "--workers", str(WORKERS), "--worker-class", "gthread",
        "--threads", str(THREADS), "--keep-alive", "30", "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning", app,
    ]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def wait_ready(port: int, path: str, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server on port {port} did not answer {path} within {timeout:.0f} s")


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def payload(i: int, run: str) -> bytes:
    """Submission ``i`` as an ad platform posts it: a distinct E.164 phone and external id."""
    body = {
        "name": lead_name(i), "phone": cn_e164(i), "source": SOURCES[i % len(SOURCES)],
        "external_id": f"{run}-{i}", "utm_source": SOURCES[i % len(SOURCES)], "utm_medium": "cpc",
        "utm_campaign": "spring",
    }
    return json.dumps(body, ensure_ascii=False).encode()


def client(port: int, path: str, first: int, count: int, secret: str | None, run: str, start_at: float,
           out: Any) -> None:
    """One load-generating process: ``count`` requests on one keep-alive connection from ``start_at``."""
    requests = []
    for i in range(first, first + count):
        body = payload(i, run)
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Pelago-Signature"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        requests.append((body, headers))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    time.sleep(max(start_at - time.monotonic(), 0))
    began = time.monotonic()
    for body, headers in requests:
        sent = time.monotonic()
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.monotonic() - sent)
        statuses[response.status] = statuses.get(response.status, 0) + 1
    ended = time.monotonic()
    conn.close()
    out.put({"began": began, "ended": ended, "latencies": latencies, "statuses": statuses})


def load(port: int, path: str, first: int, per_client: int, secret: str | None, run: str) -> dict[str, Any]:
    """``CLIENTS`` processes at once; returns the round's wall time, latencies and statuses."""
    mp = multiprocessing.get_context("fork")
    out = mp.Queue()
    start_at = time.monotonic() + 0.3 + per_client / 20_000  # time to build (and sign) the requests first
    procs = [
        mp.Process(target=client, args=(port, path, first + c * per_client, per_client, secret, run, start_at, out))
        for c in range(CLIENTS)
    ]
    for p in procs:
        p.start()
    parts = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    statuses: dict[int, int] = {}
    for part in parts:
        for status, n in part["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    return {
        "seconds": max(p["ended"] for p in parts) - min(p["began"] for p in parts),
        "latencies": [x for p in parts for x in p["latencies"]],
        "statuses": statuses,
        "requests": per_client * CLIENTS,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else 0.0


def measure(kind: str, n: int) -> dict[str, Any]:
    from pelago.core.services.channels import create_channel

    per_client = max(n // (CLIENTS * ROUNDS), 1)
    warmup = min(WARMUP, per_client)
    run = uuid.uuid4().hex[:8]
    with bench_database(kind) as url:
        runtime = make_runtime(url)
        tenant = make_tenant(runtime, reps=10)
        bare_tenant = make_tenant(runtime, reps=0, auto_routing=False)
        with runtime.tenant_context(tenant.id) as ctx:
            channel = create_channel(ctx, {"name": "bench", "source": "douyin"})
            key, secret = channel.key, channel.secret
        runtime.engine.dispose()
        ports = {"pelago": free_port(), "bare": free_port()}
        servers = {
            "pelago": gunicorn("pelago.hostapp.wsgi:app", ports["pelago"], {"DATABASE_URL": url}),
            "bare": gunicorn("bench._bare_app:app", ports["bare"],
                             {"BENCH_DATABASE_URL": url, "BENCH_TENANT_ID": str(bare_tenant.id)}),
        }
        paths = {"pelago": f"/api/v1/intake/{key}", "bare": "/intake"}
        secrets = {"pelago": secret, "bare": None}
        rounds: dict[str, list[dict[str, Any]]] = {"pelago": [], "bare": []}
        try:
            wait_ready(ports["pelago"], "/healthz", servers["pelago"])
            wait_ready(ports["bare"], "/health", servers["bare"])
            slot = 0
            for side in ("pelago", "bare"):  # warm both up: imports, pools, caches
                load(ports[side], paths[side], slot * 10**7, warmup, secrets[side], run)
                slot += 1
            log(f"{kind}: {per_client * CLIENTS * ROUNDS:,} requests per server, {CLIENTS} clients, "
                f"{ROUNDS} rounds each, servers taking turns")
            for r in range(ROUNDS):
                for side in ("pelago", "bare"):
                    outcome = load(ports[side], paths[side], slot * 10**7, per_client, secrets[side], run)
                    slot += 1
                    rounds[side].append(outcome)
                    log(f"  round {r + 1} {side}: {outcome['requests'] / outcome['seconds']:.0f} requests/s "
                        f"{outcome['statuses']}")
        finally:
            for server in servers.values():
                stop(server)
        counts = _check(url, tenant.id, bare_tenant.id)
    figures: dict[str, Any] = {"requests": per_client * CLIENTS * ROUNDS}
    rates = {}
    for side, outcomes in rounds.items():
        seconds = sum(o["seconds"] for o in outcomes)
        requests = sum(o["requests"] for o in outcomes)
        latencies = [x for o in outcomes for x in o["latencies"]]
        bad = {s: c for o in outcomes for s, c in o["statuses"].items() if s != 201}
        if bad:
            raise AssertionError(f"{side}: answers other than 201: {bad}")
        rates[side] = requests / seconds
        figures[f"{side}_rps"] = round(rates[side], 1)
        figures[f"{side}_p50_ms"] = round(percentile(latencies, 0.5) * 1000, 2)
        figures[f"{side}_p99_ms"] = round(percentile(latencies, 0.99) * 1000, 2)
    expected = CLIENTS * (warmup + per_client * ROUNDS)
    if set(counts.values()) != {expected}:  # every lead has its touch and its ledger row (created, routed)
        raise AssertionError(f"expected {expected} leads (with touches and ledger rows) on each side, found {counts}")
    figures.update(workers=WORKERS, threads=THREADS, clients=CLIENTS, goal=GOAL)
    return result(f"intake_http_{kind}", rates["pelago"] / rates["bare"], **figures)


def _check(url: str, tenant_id: int, bare_tenant_id: int) -> dict[str, int]:
    from sqlalchemy import func, select

    from pelago.core.models import Lead, OwnershipChange, Touch

    runtime = make_runtime(url)
    try:
        with runtime.sessions() as session:
            def count(model: Any, tid: int) -> int:
                return int(session.scalar(select(func.count()).select_from(model).where(model.tenant_id == tid)) or 0)

            return {
                "pelago_leads": count(Lead, tenant_id), "pelago_touches": count(Touch, tenant_id),
                "pelago_ledger": count(OwnershipChange, tenant_id), "bare_leads": count(Lead, bare_tenant_id),
            }
    finally:
        runtime.engine.dispose()


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__.split("\n", 1)[0], 8_000, db="postgresql").parse_args(argv)
    for kind in kinds(args.db):
        measure(kind, args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
