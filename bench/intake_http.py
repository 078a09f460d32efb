"""intake_http (webhook accept, routed latency) and api_create, over HTTP, against bare Flask endpoints.

Gunicorn servers with the same settings (2 workers, gthread with 4 threads
each, keep-alive) on a fresh database: the real Pelago app
(``pelago.hostapp.wsgi:app``, with Redis and two ``pelago worker`` (rq)
processes running the routers and deliveries, as in production; rate limits off) and
bench/_bare_app.py. The tenant auto-routes to a team of 10 reps, round robin.
The load generator is 4 client processes, each with one keep-alive
``http.client`` connection, sending a fixed number of requests, every one
with a distinct phone and external id; Pelago's webhooks are signed with the
channel's secret (signatures are computed before the clock starts). Servers
take turns, ``ROUNDS`` times each, and each side's rate is its requests over
its time. The routers are paused (SIGSTOP) during the accept side's turns,
so those measure the accept alone, and the backlog is drained before every
other turn, so the routers never share the machine with another side. The
backlog is every tenant's: the baseline's ``POST /accept`` rows are
``accepted`` submissions too, which the same routers take, and the drain
starts a router for them (until 6 December it watched Pelago's tenant only,
and the paced burst's routers first routed the 1,000 baseline rows left
from the last round: see ``_drained``).

Every side reports two ratios (``ratio``, ``ratio_sql``):

- **intake_http** (accept side): signed ``POST /api/v1/intake/{key}``
  answered 202 (verified, mapped, checked, stored) versus the bare
  ``POST /intake`` (one ``core_lead`` INSERT, ``ratio``) and versus
  ``POST /accept``, the same ``core_submission`` write by hand (``ratio_sql``).
  Then **routed latency**: webhooks sent at 80 % of the measured accept rate
  (paced), and for each, ``processed_at − received_at`` from the database
  once the routers have drained (``routed_p50_ms``, ``routed_p99_ms``; goal
  p99 ≤ 1 s).
- **api_create**: the synchronous ``POST /api/v1/leads`` (routed, answered
  with the lead) versus the bare ``POST /intake`` (``ratio``) and versus
  ``POST /lead``, the same writes by hand in one statement (lead with owner,
  touch, stage history, ledger row, outbox event; ``ratio_sql``).

    python -m bench.intake_http [--rows 8000] [--db postgresql]
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
from pelago.core.crypto import new_key

GOAL = ">=0.5"
API_GOAL = ">=0.3"
ROUTED_GOAL_MS = 1000
WORKERS = 2
THREADS = 4
CLIENTS = 4
ROUNDS = 2
WARMUP = 50  # requests per client before each server's first round (fewer in small runs)
RQ_WORKERS = 2  # `pelago worker` processes: the routers (queue pelago-intake first) and deliveries
PACED_SHARE = 0.8  # routed latency is measured at this share of the accept rate
SOURCES = ("douyin", "baidu", "wechat", "xiaohongshu")
#: a Redis database of this benchmark's own (the rq queue and the router's flag)
REDIS_URL = os.environ.get("PELAGO_BENCH_REDIS", "redis://127.0.0.1:6379/11")


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


def client(port: int, path: str, first: int, count: int, auth: dict[str, str], run: str, start_at: float,
           out: Any, interval: float = 0.0) -> None:
    """One load-generating process: ``count`` requests on one keep-alive connection from ``start_at``.

    ``auth``: ``{"secret": …}`` signs each body, ``{"bearer": …}`` sends an API key. ``interval`` > 0
    paces the requests (one every ``interval`` seconds, on a fixed schedule) instead of back to back.
    """
    requests = []
    for i in range(first, first + count):
        body = payload(i, run)
        headers = {"Content-Type": "application/json"}
        if auth.get("secret"):
            headers["X-Pelago-Signature"] = "sha256=" + hmac.new(
                auth["secret"].encode(), body, hashlib.sha256).hexdigest()
        if auth.get("bearer"):
            headers["Authorization"] = f"Bearer {auth['bearer']}"
        requests.append((body, headers))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    time.sleep(max(start_at - time.monotonic(), 0))
    began = time.monotonic()
    for k, (body, headers) in enumerate(requests):
        if interval:
            time.sleep(max(began + k * interval - time.monotonic(), 0))
        sent = time.monotonic()
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.monotonic() - sent)
        statuses[response.status] = statuses.get(response.status, 0) + 1
    ended = time.monotonic()
    conn.close()
    out.put({"began": began, "ended": ended, "latencies": latencies, "statuses": statuses})


def load(port: int, path: str, first: int, per_client: int, auth: dict[str, str], run: str,
         rate: float = 0.0) -> dict[str, Any]:
    """``CLIENTS`` processes at once (paced to ``rate`` requests/s in all if given); returns the round's
    wall time, latencies and statuses."""
    mp = multiprocessing.get_context("fork")
    out = mp.Queue()
    start_at = time.monotonic() + 0.3 + per_client / 20_000  # time to build (and sign) the requests first
    interval = CLIENTS / rate if rate else 0.0
    procs = [
        mp.Process(target=client, args=(port, path, first + c * per_client, per_client, auth, run, start_at, out,
                                         interval))
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


def measure(kind: str, n: int) -> list[dict[str, Any]]:
    from pelago.core.models import User
    from pelago.core.services.admin import create_api_key
    from pelago.core.services.channels import create_channel

    per_client = max(n // (CLIENTS * ROUNDS), 1)
    warmup = min(WARMUP, per_client)
    run = uuid.uuid4().hex[:8]
    with bench_database(kind) as url:
        runtime = make_runtime(url)
        tenant = make_tenant(runtime, reps=10)
        bare_tenant = make_tenant(runtime, reps=10)
        with runtime.tenant_context(tenant.id) as ctx:
            channel = create_channel(ctx, {"name": "bench", "source": "douyin"})
            key, secret = channel.key, channel.secret
        with runtime.sessions() as session:
            from pelago.core.services import admin

            manager = admin.create_user(session, tenant_id=tenant.id, email=f"mgr@{tenant.slug}.test",
                                        role="manager", name="M", team_id=tenant.team_id, now=runtime.clock())
            session.flush()
            bearer = create_api_key(session, session.get(User, manager.id), now=runtime.clock())[1]
            session.commit()
        runtime.engine.dispose()
        _flush_redis()
        pelago_env = {"DATABASE_URL": url, "REDIS_URL": REDIS_URL, "PELAGO_INTAKE_RATE_ADDRESS": "0",
                      "PELAGO_INTAKE_RATE_CHANNEL": "0"}
        ports = {"pelago": free_port(), "bare": free_port()}
        servers = {
            "pelago": gunicorn("pelago.hostapp.wsgi:app", ports["pelago"], pelago_env),
            "bare": gunicorn("bench._bare_app:app", ports["bare"], {
                "BENCH_DATABASE_URL": url, "BENCH_TENANT_ID": str(bare_tenant.id),
                "BENCH_TEAM_ID": str(bare_tenant.team_id), "BENCH_REPS": ",".join(map(str, bare_tenant.rep_ids))}),
        }
        workers = [subprocess.Popen([str(Path(sys.executable).with_name("pelago")), "worker"], cwd=ROOT,
                                    env={**os.environ, "PYTHONPATH": str(ROOT), **pelago_env},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                   for _ in range(RQ_WORKERS)]
        # side → (port, path, auth, expected status)
        sides = {
            "accept": (ports["pelago"], f"/api/v1/intake/{key}", {"secret": secret}, 202),
            "api": (ports["pelago"], "/api/v1/leads", {"bearer": bearer}, 201),
            "bare": (ports["bare"], "/intake", {}, 201),
            "accept_sql": (ports["bare"], "/accept", {}, 202),
            "api_sql": (ports["bare"], "/lead", {}, 201),
        }
        rounds: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
        slot = 0
        paced: dict[str, Any] = {}
        try:
            wait_ready(ports["pelago"], "/healthz", servers["pelago"])
            wait_ready(ports["bare"], "/health", servers["bare"])
            for port, path, auth, _ in sides.values():  # warm every side up: imports, pools, caches
                load(port, path, slot * 10**7, warmup, auth, run)
                slot += 1
            _drained(url)
            log(f"{kind}: {per_client * CLIENTS * ROUNDS:,} requests per side, {CLIENTS} clients, "
                f"{ROUNDS} rounds each, sides taking turns")
            for r in range(ROUNDS):
                for side, (port, path, auth, _) in sides.items():
                    if side != "accept":
                        _drained(url)  # the routers' backlog does not share the machine with it
                    else:
                        _pause(workers, True)  # the accept side alone: its routers run after it
                    outcome = load(port, path, slot * 10**7, per_client, auth, run)
                    _pause(workers, False)
                    slot += 1
                    rounds[side].append(outcome)
                    log(f"  round {r + 1} {side}: {outcome['requests'] / outcome['seconds']:.0f} requests/s "
                        f"{outcome['statuses']}")
            _drained(url)
            accept_rate = sum(o["requests"] for o in rounds["accept"]) / sum(o["seconds"] for o in rounds["accept"])
            target = accept_rate * PACED_SHARE
            since = _now_db(url)
            port, path, auth, _ = sides["accept"]
            outcome = load(port, path, slot * 10**7, per_client, auth, run, rate=target)
            waited = _drained(url)
            paced = {"rate": outcome["requests"] / outcome["seconds"], "statuses": outcome["statuses"],
                     "latencies": _routed_latencies(url, tenant.id, since), "drain_s": waited}
            log(f"  paced accept at {paced['rate']:.0f} requests/s (target {target:.0f}): routed p99 "
                f"{percentile(paced['latencies'], 0.99) * 1000:.0f} ms")
        finally:
            for server in servers.values():
                stop(server)
            for worker in workers:
                stop(worker)
        counts = _check(url, tenant.id)
    figures: dict[str, Any] = {}
    rates: dict[str, float] = {}
    for side, outcomes in rounds.items():
        expected = sides[side][3]
        bad = {s: c for o in outcomes for s, c in o["statuses"].items() if s != expected}
        if bad:
            raise AssertionError(f"{side}: answers other than {expected}: {bad}")
        rates[side] = sum(o["requests"] for o in outcomes) / sum(o["seconds"] for o in outcomes)
        latencies = [x for o in outcomes for x in o["latencies"]]
        figures[side] = {"rps": round(rates[side], 1), "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
                         "p99_ms": round(percentile(latencies, 0.99) * 1000, 2)}
    if counts["accepted"] or counts["failed"]:
        raise AssertionError(f"submissions left unrouted or failed: {counts}")
    if counts["created"] != counts["submissions"] or counts["touches"] != counts["leads"]:
        raise AssertionError(f"every submission and API call must make one lead with one touch: {counts}")
    common = {"workers": WORKERS, "threads": THREADS, "clients": CLIENTS, "rq_workers": RQ_WORKERS, "requests_per_side": per_client * CLIENTS * ROUNDS}
    out = [result(
        f"intake_http_{kind}", rates["accept"] / rates["bare"], ratio_sql=round(rates["accept"] / rates["accept_sql"], 3),
        accept_rps=figures["accept"]["rps"], bare_rps=figures["bare"]["rps"], sql_rps=figures["accept_sql"]["rps"],
        accept_p50_ms=figures["accept"]["p50_ms"], accept_p99_ms=figures["accept"]["p99_ms"],
        bare_p50_ms=figures["bare"]["p50_ms"],
        paced_rps=round(paced["rate"], 1), routed_p50_ms=round(percentile(paced["latencies"], 0.5) * 1000, 1),
        routed_p99_ms=round(percentile(paced["latencies"], 0.99) * 1000, 1), routed_goal_ms=ROUTED_GOAL_MS,
        routed_met="yes" if percentile(paced["latencies"], 0.99) * 1000 <= ROUTED_GOAL_MS else "NO",
        **common, goal=GOAL,
    ), result(
        f"api_create_{kind}", rates["api"] / rates["bare"], ratio_sql=round(rates["api"] / rates["api_sql"], 3),
        api_rps=figures["api"]["rps"], bare_rps=figures["bare"]["rps"], sql_rps=figures["api_sql"]["rps"],
        api_p50_ms=figures["api"]["p50_ms"], api_p99_ms=figures["api"]["p99_ms"],
        sql_p50_ms=figures["api_sql"]["p50_ms"], **common, goal=API_GOAL,
    )]
    return out


def _pause(workers: list[subprocess.Popen[bytes]], stop: bool) -> None:
    """Stop (SIGSTOP) or continue the rq workers and their work horses.

    A work horse (the forked process running a job, a router among them) makes
    a process group of its own (rq's ``os.setpgrp()``), so each is signalled
    by its own group: the worker first when stopping (it forks no new one
    meanwhile), last when continuing.
    """
    sig = signal.SIGSTOP if stop else signal.SIGCONT
    if stop:
        for worker in workers:
            os.killpg(worker.pid, sig)
    for worker in workers:
        for horse in _children(worker.pid):
            try:
                os.killpg(horse, sig)
            except ProcessLookupError:
                pass  # its job just ended
    if not stop:
        for worker in workers:
            os.killpg(worker.pid, sig)


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux: /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _flush_redis() -> None:
    """Empty this benchmark's Redis database (a queue left from an interrupted run)."""
    from redis import Redis

    Redis.from_url(REDIS_URL).flushdb()


def _now_db(url: str) -> Any:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT now()")).scalar()
    finally:
        engine.dispose()


def _start_router() -> None:
    """Start a router as an accept does (a no-op while one is pending): for the rows ``POST /accept``
    (the same-writes baseline) stored as ``accepted``, which nothing else starts one for."""
    from typing import cast

    from pelago.core.jobs import RqQueue
    from pelago.core.services.submissions import ROUTE_JOB

    RqQueue(cast(Any, None), REDIS_URL).kick(ROUTE_JOB)


def _drained(url: str, timeout: float = 300) -> float:
    """Wait until no submission is ``accepted``; the seconds it took.

    Every tenant's: the baseline's ``POST /accept`` rows (the bare tenant's)
    are ``accepted`` too, and the same routers take them. Until 6 December
    only Pelago's tenant was watched and nothing started a router for the
    baseline's rows, so they waited for the next Pelago accept, the paced
    burst's first: the routers then routed those 1,000 older rows (claims take
    the oldest first) before any paced submission, a start-up backlog in the
    routed latency that was not the paced webhooks' own.
    """
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    began = time.monotonic()
    kicked = False
    try:
        while True:
            with engine.connect() as conn:
                left = conn.execute(text("SELECT count(*) FROM core_submission WHERE status = 'accepted'")).scalar()
            if left and not kicked:
                _start_router()
                kicked = True
            if not left:
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise AssertionError(f"{left} submissions still accepted after {timeout:.0f} s: is the worker up?")
            time.sleep(0.05)
    finally:
        engine.dispose()


def _routed_latencies(url: str, tenant_id: int, since: Any) -> list[float]:
    """``processed_at − received_at`` in seconds of the tenant's submissions received after ``since``."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [float(x) for x in conn.execute(text(
                "SELECT extract(epoch FROM processed_at - received_at) FROM core_submission "
                "WHERE tenant_id = :t AND received_at >= :since"), {"t": tenant_id, "since": since}).scalars()]
    finally:
        engine.dispose()


def _check(url: str, tenant_id: int) -> dict[str, int]:
    from sqlalchemy import func, select

    from pelago.core.models import Lead, StoredSubmission, Touch

    runtime = make_runtime(url)
    try:
        with runtime.sessions() as session:
            def count(model: Any, *where: Any) -> int:
                return int(session.scalar(select(func.count()).select_from(model)
                                          .where(model.tenant_id == tenant_id, *where)) or 0)

            return {
                "submissions": count(StoredSubmission), "leads": count(Lead), "touches": count(Touch),
                "accepted": count(StoredSubmission, StoredSubmission.status == "accepted"),
                "failed": count(StoredSubmission, StoredSubmission.status == "failed"),
                "created": count(StoredSubmission, StoredSubmission.outcome == "created"),
            }
    finally:
        runtime.engine.dispose()


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__.split("\n", 1)[0], 8_000, db="postgresql").parse_args(argv)
    # The channel's secret is stored encrypted: a throwaway key for this run, inherited by the servers.
    os.environ.setdefault("PELAGO_SECRET_KEYS", new_key())
    for kind in kinds(args.db):
        measure(kind, args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
