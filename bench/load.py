"""load: 64 concurrent clients of mixed traffic for 60 s, production mode and embedded mode.

Not a ratio against a baseline like the other benchmarks: a soak of the whole
system, which must answer no 5xx and lose or duplicate no lead.

**Production** (``--mode production``): a throwaway PostgreSQL database
(created and dropped here), a private ``redis-server`` on a free port
(started and stopped here), gunicorn with 2 workers (gthread, 8 threads
each) serving ``pelago.hostapp.wsgi:app``, 2 ``pelago worker`` processes and
one ``pelago scheduler``. **Embedded** (``--mode embedded``): ``pelago serve``
on a SQLite file, no Redis (jobs on its background thread). Everything
listens on 127.0.0.1 only. The per-address limit of the webhooks
(``PELAGO_INTAKE_RATE_ADDRESS``) is off: every client here has the address
127.0.0.1, which real ad platforms do not share; the per-channel limit
keeps its default (3000 a minute), and a 429 from it is an expected answer.

One tenant: 10 reps, auto-routing off, the ``pool`` plugin on (its default
pool is where ``pool_create`` puts leads and reps claim from), one intake
channel. ``--clients`` (64) clients, each a thread with
one keep-alive connection (4 processes of 16 threads), send for
``--seconds`` (60) a weighted mix of:

| kind | request | as | expected |
|---|---|---|---|
| ``create`` 20% | ``POST /api/v1/leads``, a new phone (stays unowned: routing is off) | admin | 201 |
| ``pool_create`` 10% | ``POST /api/v1/pool/pools/{id}/leads``, a new phone, into the default pool | admin | 201 |
| ``duplicate`` 10% | ``POST /api/v1/leads``, a phone this client created, written another way | admin | 200 (merged) |
| ``webhook`` 15% | ``POST /api/v1/intake/{key}``, signed, a new phone | channel | 202 (routed after); 429 past the channel's rate limit |
| ``list`` 15% | ``GET /api/v1/leads?limit=20`` | admin | 200 |
| ``pool_list`` + ``claim`` 15% | ``GET /api/v1/pool/pools/{id}/leads?claimable=true``, then ``POST /api/v1/pool/claim`` one of them | a rep | 200; 409 when another rep won it |
| ``activity`` 15% | ``POST /api/v1/leads/{id}/activities`` on a lead this client created | admin | 201 |

Reported per mode: requests/s, p50/p99 latency per kind, the count of 5xx
(must be 0), answers other than the expected (with samples), and the check
after the run: every phone whose create or webhook was answered 2xx is
exactly one lead, and the tenant has no other lead (none lost, none
duplicated); plus event deliveries still pending after a bounded drain
(``drain_seconds``: how long the workers took, after the load, to deliver
the events it left queued).
``ratio`` is the share of requests answered without a 5xx (goal ``>=1``).
Exits non-zero if a 5xx was answered or a lead was lost or duplicated.

    python -m bench.load [--mode production|embedded|both] [--seconds 60] [--clients 64] [--rows MAX_REQUESTS]
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    bench_database,
    cn_e164,
    cn_mobile,
    lead_name,
    log,
    make_runtime,
    make_tenant,
    result,
    written,
)
from bench.intake_http import free_port, percentile, stop, wait_ready

GOAL = ">=1"
PROCESSES = 4
WEIGHTS = {"create": 20, "pool_create": 10, "duplicate": 10, "webhook": 15, "list": 15, "claim": 15, "activity": 15}
EXPECTED = {
    "create": {201}, "pool_create": {201}, "duplicate": {200}, "webhook": {201, 429}, "list": {200}, "pool_list": {200},
    "claim": {200, 409}, "activity": {201},
}
TIMEOUT = 30  # seconds a client waits for one answer
DRAIN = 180  # seconds to wait, after the load, for event deliveries to finish


def executable(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


# --- setup ------------------------------------------------------------------------------


def setup(url: str) -> dict[str, Any]:
    """The tenant (pool on, routing off), its keys, its channel and its default pool's id."""
    from sqlalchemy import select

    from pelago.core.models import User
    from pelago.core.services import admin
    from pelago.core.services.channels import create_channel
    from pelago.plugins.pool.pools import ensure_default

    runtime = make_runtime(url, plugins=("pool",))
    try:
        tenant = make_tenant(runtime, reps=10, auto_routing=False, plugins=("pool",))
        now = runtime.clock()
        with runtime.sessions() as session:
            boss = admin.create_user(session, tenant_id=tenant.id, email=f"admin@{tenant.slug}.test", role="admin",
                                     name="Admin", team_id=tenant.team_id, now=now)
            _, admin_key = admin.create_api_key(session, boss, now=now)
            rep_keys = []
            for user in session.scalars(select(User).where(User.id.in_(tenant.rep_ids)).order_by(User.id)):
                rep_keys.append(admin.create_api_key(session, user, now=now)[1])
            session.commit()
        with runtime.tenant_context(tenant.id) as ctx:
            channel = create_channel(ctx, {"name": "load", "source": "douyin"})
            pool_id = ensure_default(ctx)
            key, secret = channel.key, channel.secret
        return {"tenant_id": tenant.id, "admin_key": admin_key, "rep_keys": rep_keys, "channel_key": key,
                "channel_secret": secret, "pool_id": pool_id}
    finally:
        runtime.engine.dispose()


# --- clients ------------------------------------------------------------------------------


class Client:
    """One simulated user: a thread with one keep-alive connection and its own leads."""

    def __init__(self, port: int, setup: dict[str, Any], number: int, run: int, stats: dict[str, Any],
                 lock: threading.Lock) -> None:
        self.port, self.setup, self.number, self.stats, self.lock = port, setup, number, stats, lock
        self.rng = random.Random(number)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        self.next_phone = run * 10**8 + number * 10**6  # distinct phones per run and client
        self.mine: list[tuple[int, int]] = []  # (lead id, phone index) this client created
        self.admin = {"Authorization": f"Bearer {setup['admin_key']}", "Content-Type": "application/json"}
        rep = setup["rep_keys"][number % len(setup["rep_keys"])]
        self.rep = {"Authorization": f"Bearer {rep}", "Content-Type": "application/json"}

    def call(self, kind: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             raw: bytes | None = None) -> tuple[int | None, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        began = time.monotonic()
        try:
            self.conn.request(method, path, data, headers or {})
            response = self.conn.getresponse()
            text = response.read()
            status: int | None = response.status
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
            status, text = None, str(exc).encode()
        took = time.monotonic() - began
        with self.lock:
            self.stats["latency"].setdefault(kind, []).append(took)
            self.stats["status"][f"{kind} {status}"] += 1
            if status is None or status not in EXPECTED[kind]:
                samples = self.stats["samples"]
                if len(samples) < 20:
                    samples.append(f"{kind} {method} {path} -> {status}: {text[:300]!r}")
        try:
            return status, json.loads(text) if status is not None and text else None
        except ValueError:
            return status, None

    def new_phone(self) -> int:
        self.next_phone += 1
        return self.next_phone

    def create(self) -> None:
        i = self.new_phone()
        status, got = self.call("create", "POST", "/api/v1/leads",
                                {"name": lead_name(i), "phone": written(cn_mobile(i), i), "source": "website"},
                                self.admin)
        self._acked("create", i, status, got)

    def pool_create(self) -> None:
        i = self.new_phone()
        status, got = self.call("pool_create", "POST", f"/api/v1/pool/pools/{self.setup['pool_id']}/leads",
                                {"name": lead_name(i), "phone": cn_e164(i), "source": "referral"}, self.admin)
        self._acked("pool_create", i, status, got)

    def webhook(self) -> None:
        i = self.new_phone()
        body = json.dumps({"name": lead_name(i), "phone": cn_e164(i), "source": "douyin",
                           "external_id": f"load-{i}", "utm_medium": "cpc"}, ensure_ascii=False).encode()
        signature = hmac.new(self.setup["channel_secret"].encode(), body, hashlib.sha256).hexdigest()
        status, got = self.call("webhook", "POST", f"/api/v1/intake/{self.setup['channel_key']}",
                                headers={"Content-Type": "application/json",
                                         "X-Pelago-Signature": f"sha256={signature}"}, raw=body)
        self._acked("webhook", i, status, got and {"id": got.get("id")})

    def _acked(self, kind: str, i: int, status: int | None, got: Any) -> None:
        with self.lock:
            if status is not None and 200 <= status < 300:
                self.stats["acked"].add(cn_e164(i))
            elif status is None or status >= 500:
                self.stats["unknown"].add(cn_e164(i))  # may or may not exist: not counted as lost
        if status is not None and 200 <= status < 300 and got and got.get("id"):
            self.mine.append((got["id"], i))

    def duplicate(self) -> None:
        if not self.mine:
            return self.create()
        lead_id, i = self.rng.choice(self.mine)
        self.call("duplicate", "POST", "/api/v1/leads",
                  {"name": lead_name(i), "phone": written(cn_mobile(i), i + 1 + self.rng.randrange(7))},
                  self.admin)

    def list(self) -> None:
        self.call("list", "GET", "/api/v1/leads?limit=20", headers=self.admin)

    def claim(self) -> None:
        status, page = self.call("pool_list", "GET",
                                 f"/api/v1/pool/pools/{self.setup['pool_id']}/leads?claimable=true&limit=10",
                                 headers=self.rep)
        items = (page or {}).get("items") or [] if status == 200 else []
        if items:
            lead = self.rng.choice(items)
            self.call("claim", "POST", "/api/v1/pool/claim", {"lead_ids": [lead["id"]]}, self.rep)

    def activity(self) -> None:
        if not self.mine:
            return self.create()
        lead_id, _ = self.rng.choice(self.mine)
        self.call("activity", "POST", f"/api/v1/leads/{lead_id}/activities",
                  {"kind": self.rng.choice(("call", "note", "wechat")), "note": "load"}, self.admin)

    def run(self, until: float, budget: list[int]) -> None:
        kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
        while time.monotonic() < until:
            with self.lock:
                if budget[0] <= 0:
                    break
                budget[0] -= 1
            getattr(self, self.rng.choices(kinds, weights)[0])()
        self.conn.close()


def client_process(port: int, setup: dict[str, Any], first: int, threads: int, run: int, start_at: float,
                   seconds: float, max_requests: int, out: Any) -> None:
    stats: dict[str, Any] = {"latency": {}, "status": Counter(), "samples": [], "acked": set(), "unknown": set()}
    lock = threading.Lock()
    budget = [max_requests]
    clients = [Client(port, setup, first + k, run, stats, lock) for k in range(threads)]
    time.sleep(max(start_at - time.monotonic(), 0))
    began = time.monotonic()
    workers = [threading.Thread(target=c.run, args=(began + seconds, budget)) for c in clients]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stats["seconds"] = time.monotonic() - began
    stats["acked"], stats["unknown"] = sorted(stats["acked"]), sorted(stats["unknown"])
    out.put(stats)


def drive(port: int, setup: dict[str, Any], clients: int, seconds: float, max_requests: int) -> dict[str, Any]:
    mp = multiprocessing.get_context("fork")
    out = mp.Queue()
    run = random.Random().randrange(1, 9)  # phones of this run differ from an earlier run's on a kept database
    processes = min(PROCESSES, clients)
    per = [clients // processes + (1 if k < clients % processes else 0) for k in range(processes)]
    start_at = time.monotonic() + 1.0
    procs, first = [], 0
    for k in range(processes):
        procs.append(mp.Process(target=client_process, args=(
            port, setup, first, per[k], run, start_at, seconds, max(max_requests // processes, 1), out)))
        first += per[k]
    for p in procs:
        p.start()
    parts = [out.get(timeout=seconds + 10 * TIMEOUT + 60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    merged: dict[str, Any] = {"latency": {}, "status": Counter(), "samples": [], "acked": set(), "unknown": set(),
                              "seconds": max(p["seconds"] for p in parts)}
    for part in parts:
        for kind, values in part["latency"].items():
            merged["latency"].setdefault(kind, []).extend(values)
        merged["status"].update(part["status"])
        merged["samples"].extend(part["samples"])
        merged["acked"].update(part["acked"])
        merged["unknown"].update(part["unknown"])
    return merged


# --- checks -----------------------------------------------------------------------------


def drain_and_check(url: str, tenant_id: int, acked: set[str], unknown: set[str]) -> dict[str, Any]:
    """Wait (bounded) for the routers (accepted webhook submissions) and deliveries to finish, then
    check every acknowledged phone is one lead."""
    from sqlalchemy import func, select

    from pelago.core.models import Delivery, Lead, StoredSubmission

    runtime = make_runtime(url)
    try:
        began = time.monotonic()
        deadline = began + DRAIN
        while True:
            with runtime.sessions() as session:
                pending = int(session.scalar(select(func.count()).select_from(Delivery).where(
                    Delivery.tenant_id == tenant_id, Delivery.state == "pending")) or 0)
                pending += int(session.scalar(select(func.count()).select_from(StoredSubmission).where(
                    StoredSubmission.tenant_id == tenant_id, StoredSubmission.status == "accepted")) or 0)
            if pending == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        drained = time.monotonic() - began
        with runtime.sessions() as session:
            counts = dict(session.execute(
                select(Lead.phone, func.count()).where(Lead.tenant_id == tenant_id).group_by(Lead.phone)).all())
            failed = int(session.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.tenant_id == tenant_id, Delivery.state == "failed")) or 0)
            delivered = int(session.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.tenant_id == tenant_id, Delivery.state == "delivered")) or 0)
    finally:
        runtime.engine.dispose()
    lost = sorted(p for p in acked if counts.get(p, 0) == 0)
    duplicated = sorted(p for p, n in counts.items() if n > 1)
    strangers = sorted(p for p in counts if p not in acked and p not in unknown)
    return {"leads": sum(counts.values()), "acked_phones": len(acked), "lost": lost, "duplicated": duplicated,
            "unexplained": strangers, "deliveries_pending": pending, "deliveries_failed": failed,
            "deliveries_delivered": delivered, "drain_seconds": round(drained, 1)}


# --- the two modes --------------------------------------------------------------------------


def redis_server(port: int, folder: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: the production mode needs a private one")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from redis import Redis

    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            return proc
        except Exception:  # noqa: BLE001 - not up yet
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)


@contextmanager
def database(kind: str, url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
    else:
        with bench_database(kind) as fresh:
            yield fresh


def measure(mode: str, clients: int, seconds: float, max_requests: int, url: str | None = None) -> dict[str, Any]:
    """One mode's run; ``url``: an already migrated database of the mode's kind to use instead of a fresh one."""
    folder = tempfile.mkdtemp(prefix="pelago_load_")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PELAGO_INSTANCE_DIR": folder, "PELAGO_STRICT_PLUGINS": "1",
           "PELAGO_INTAKE_RATE_ADDRESS": "0"}
    env.pop("REDIS_URL", None)
    before = os.environ.get("PELAGO_INSTANCE_DIR")
    os.environ["PELAGO_INSTANCE_DIR"] = folder  # the channel's secret is encrypted with this folder's key
    procs: list[subprocess.Popen[bytes]] = []
    kind = "postgresql" if mode == "production" else "sqlite"
    try:
        with database(kind, url) as url:
            info = setup(url)
            port = free_port()
            env["DATABASE_URL"] = url
            if mode == "production":
                redis_port = free_port()
                procs.append(redis_server(redis_port, folder))
                env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
                server = subprocess.Popen(
                    [executable("gunicorn"), "--workers", "2", "--worker-class", "gthread", "--threads", "8",
                     "--keep-alive", "30", "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
                     "pelago.hostapp.wsgi:app"], cwd=ROOT, env=env)
                procs.append(server)
                for _ in range(2):
                    procs.append(subprocess.Popen([executable("pelago"), "worker"], cwd=ROOT, env=env,
                                                  stdout=subprocess.DEVNULL))
                procs.append(subprocess.Popen([executable("pelago"), "scheduler", "--interval", "5"], cwd=ROOT,
                                              env=env, stdout=subprocess.DEVNULL))
            else:
                server = subprocess.Popen([executable("pelago"), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                          cwd=ROOT, env={**env, "PELAGO_SCHEDULER_INTERVAL": "5"},
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                procs.append(server)
            wait_ready(port, "/readyz", server)
            log(f"{mode}: {clients} clients for {seconds:.0f} s on {kind} (port {port})")
            load = drive(port, info, clients, seconds, max_requests)
            log(f"{mode}: load done, draining deliveries and checking the leads")
            check = drain_and_check(url, info["tenant_id"], load["acked"], load["unknown"])
            for proc in reversed(procs):
                stop(proc)
            procs.clear()
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
        if before is None:
            os.environ.pop("PELAGO_INSTANCE_DIR", None)
        else:
            os.environ["PELAGO_INSTANCE_DIR"] = before
    return report(mode, clients, load, check)


def report(mode: str, clients: int, load: dict[str, Any], check: dict[str, Any]) -> dict[str, Any]:
    statuses: Counter[str] = load["status"]
    total = sum(statuses.values())
    server_errors = sum(n for key, n in statuses.items() if key.split()[1].isdigit() and int(key.split()[1]) >= 500)
    no_answer = sum(n for key, n in statuses.items() if key.split()[1] == "None")
    unexpected = {key: n for key, n in statuses.items()
                  if not (key.split()[1].isdigit() and int(key.split()[1]) in EXPECTED[key.split()[0]])}
    figures: dict[str, Any] = {
        "requests": total, "seconds": round(load["seconds"], 1), "rps": round(total / load["seconds"], 1),
        "clients": clients, "http_5xx": server_errors, "no_answer": no_answer,
        "unexpected": sum(unexpected.values()),
    }
    for kind in ("create", "pool_create", "duplicate", "webhook", "list", "pool_list", "claim", "activity"):
        values = load["latency"].get(kind, [])
        figures[f"{kind}_n"] = len(values)
        figures[f"{kind}_p50_ms"] = round(percentile(values, 0.5) * 1000, 1)
        figures[f"{kind}_p99_ms"] = round(percentile(values, 0.99) * 1000, 1)
    figures.update(
        claims_won=statuses.get("claim 200", 0), claims_lost=statuses.get("claim 409", 0),
        webhooks_limited=statuses.get("webhook 429", 0),
        leads=check["leads"], acked_phones=check["acked_phones"], lost=len(check["lost"]),
        duplicated=len(check["duplicated"]), unexplained=len(check["unexplained"]),
        deliveries_delivered=check["deliveries_delivered"], deliveries_pending=check["deliveries_pending"],
        deliveries_failed=check["deliveries_failed"], drain_seconds=check["drain_seconds"], goal=GOAL,
    )
    if unexpected:
        log(f"{mode}: answers other than expected: {unexpected}")
        for line in load["samples"][:10]:
            log(f"  {line}")
    for name in ("lost", "duplicated", "unexplained"):
        if check[name]:
            log(f"{mode}: {name} phones (first 10): {check[name][:10]}")
    ok_share = (total - server_errors) / total if total else 0.0
    return result(f"load_{mode}", ok_share, **figures)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mode", choices=("production", "embedded", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load (default 60)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    parser.add_argument("--rows", type=int, default=10**7, help="at most this many requests in all (a bound)")
    parser.add_argument("--db", default=None, help=argparse.SUPPRESS)  # bench/run passes it to every benchmark
    args = parser.parse_args(argv)
    modes = ("production", "embedded") if args.mode == "both" else (args.mode,)
    failed = False
    for mode in modes:
        record = measure(mode, args.clients, args.seconds, args.rows)
        f = record["figures"]
        if f["http_5xx"] or f["lost"] or f["duplicated"]:
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
