"""sms_dispatch: 100,000 due messages dispatched by Pelago versus a bare loop posting them, same stand-in, same concurrency.

One tenant with sms_nurture on, the ``http`` provider pointed at the stand-in
gateway (``plugins/sms_nurture/tests/gateway.py``, its own process, on
127.0.0.1: it checks each request's HMAC signature and counts every send by
our id), and ``--rows`` leads enrolled in a one-step sequence whose messages
are all due now (loaded with ``INSERT … SELECT``).

Pelago: ``--workers`` (4) processes of ``pelago sms dispatch --tenant SLUG``
at once: each claims batches of 500 ``FOR UPDATE SKIP LOCKED``, checks the
rules (window, validity, suppression, consent, caps with the phones' rows
locked), renders, sends chunks of 50 under a lease that outlasts them, posts each message signed
through ``pelago.plugin.post_json``, and records the answers with the ``sms``
activities (their events delivered inline after each commit).

Bare: as many processes, each posting its share of the same rendered texts,
signed, through the same ``post_json``, to a second stand-in, in a plain loop.

Ratio: Pelago's throughput over the bare loop's, the bare loop run once
before and once after Pelago and averaged (the machine's load drifts; both
runs are reported); goal ≥ 0.7. The gateway's counts must show every message
received exactly once.

    python -m bench.sms_dispatch [--rows 100000] [--workers 4]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.common import ROOT, arguments, bench_database, log, make_runtime, make_tenant, result

GOAL = ">=0.7"
SECRET = "bench-secret"

LOAD = """
INSERT INTO core_lead (tenant_id, name, phone, source, stage, is_customer, owner_id, team_id, locked, attributes,
                       created_at, updated_at, assigned_at, stage_changed_at, last_activity_at, version)
SELECT :t, '学员' || g, '+86' || (13800000000 + g)::text, 'douyin', 'new', false, NULL, :team, false, '{}',
       now() - interval '2 days', now() - interval '2 days', NULL, now() - interval '2 days', NULL, 1
FROM generate_series(1, :n) g;
INSERT INTO sms_nurture_enrolment (tenant_id, lead_id, sequence_id, pass_key, status, source, enrolled_at,
                                   next_position, next_due_at)
SELECT :t, id, :seq, 'manual', 'completed', 'manual', now(), 2, NULL FROM core_lead WHERE tenant_id = :t;
INSERT INTO sms_nurture_message (tenant_id, our_id, enrolment_id, step_id, sequence_id, lead_id, status, rank,
                                 planned_at, due_at, expires_at, attempts)
SELECT :t, :t || '-' || e.id || '-' || :step, e.id, :step, :seq, e.lead_id, 'queued', 0,
       now(), now(), now() + interval '1 day', 0
FROM sms_nurture_enrolment e WHERE e.tenant_id = :t;
"""

BARE = r"""
import json, sys
from pelago.plugin import post_json
url, path = sys.argv[1], sys.argv[2]
for m in json.load(open(path)):
    body = json.dumps(m, ensure_ascii=False, separators=(",", ":")).encode()
    answer = post_json(url, body, secret=sys.argv[3], timeout=5, headers={"Idempotency-Key": m["id"]})
    assert answer.ok, answer.status
"""


def gateway() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "pelago.plugins.sms_nurture.tests.gateway", SECRET],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def counts(url: str) -> dict[str, int]:
    from pelago.plugin import post_json

    return json.loads(post_json(f"{url}/counts", b"{}", secret=SECRET).body)  # type: ignore[no-any-return]


def env(url: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    out.update(DATABASE_URL=url, PELAGO_PLUGINS="sms_nurture", PELAGO_OUTBOUND_ALLOW_PRIVATE="1")
    return out


def bare_loop(n: int, workers: int, body: str, url: str, label: str) -> float:
    """``workers`` processes posting their share of the ``n`` rendered texts in a plain loop; the seconds taken."""
    from pelago.plugins.sms_nurture import text

    log(f"bare ({label}): {workers} processes posting {n:,} rendered messages")
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for w in range(workers):
            share = [{"id": f"bare-{label}-{i}", "to": f"+86{13800000000 + i}",
                      "text": text.render(body, {"name": f"学员{i}"}, "学而思"), "template_id": None,
                      "variables": {}} for i in range(w + 1, n + 1, workers)]
            paths.append(Path(folder) / f"{w}.json")
            paths[-1].write_text(json.dumps(share, ensure_ascii=False))
        started = time.perf_counter()
        bare = [subprocess.Popen([sys.executable, "-c", BARE, f"{url}/send", str(p), SECRET], env=env(""), cwd=ROOT)
                for p in paths]
        for p in bare:
            p.wait()
        seconds = time.perf_counter() - started
        if any(p.returncode for p in bare):
            raise AssertionError("a bare poster failed")
    return seconds


def measure(n: int, workers: int) -> dict[str, Any]:
    from sqlalchemy import text as sql

    from pelago.core.services.plugins import configure
    from pelago.plugins.sms_nurture import sequences

    os.environ["PELAGO_OUTBOUND_ALLOW_PRIVATE"] = "1"
    pelago_gw, pelago_url = gateway()
    bare_gw, bare_url = gateway()
    try:
        with bench_database("postgresql") as url:
            runtime = make_runtime(url, plugins=("sms_nurture",))
            tenant = make_tenant(runtime, reps=1, auto_routing=False, plugins=("sms_nurture",))
            local = runtime.clock().astimezone(ZoneInfo("Asia/Shanghai"))
            with runtime.tenant_context(tenant.id) as ctx:
                configure(ctx, "sms_nurture", enabled=True, settings={
                    "provider": "http", "http_send_url": f"{pelago_url}/send",
                    "http_status_url": f"{pelago_url}/status", "http_secret": SECRET, "require_consent": False,
                    "daily_cap": 5, "validity_minutes": 24 * 60, "signature": "学而思",
                    "window_start": (local - timedelta(hours=1)).strftime("%H:%M"),
                    "window_end": (local + timedelta(hours=6)).strftime("%H:%M")})
                body = "{name}您好，春季班试听名额已为您预留，回T退订"
                tpl = sequences.create_template(ctx, {"name": "t", "body": body})
                seq = sequences.create_sequence(ctx, {"name": "s", "steps": [{"template_id": tpl.id,
                                                                              "delay_minutes": 0}]})
                seq_id, step_id = seq.id, sequences.sequence_out(ctx, seq)["steps"][0]["id"]
            log(f"loading {n:,} due messages")
            with runtime.engine.begin() as conn:
                for statement in LOAD.split(";\n"):
                    if statement.strip():
                        conn.execute(sql(statement), {"t": tenant.id, "n": n, "team": tenant.team_id,
                                                      "seq": seq_id, "step": step_id})
            with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sql("VACUUM ANALYZE"))
            runtime.engine.dispose()

            bare_runs = [bare_loop(n, workers, body, bare_url, "before")]
            log(f"pelago: {workers} × pelago sms dispatch")
            started = time.perf_counter()
            procs = [subprocess.Popen([str(Path(sys.executable).parent / "pelago"), "sms", "dispatch", "--tenant",
                                       tenant.slug], env=env(url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True) for _ in range(workers)]
            outputs = [p.communicate()[0] for p in procs]
            pelago_s = time.perf_counter() - started
            if any(p.returncode for p in procs):
                raise AssertionError("\n".join(outputs))
            sent_by = [int(o.rsplit("sent ", 1)[1].split(",")[0]) for o in outputs]
            from sqlalchemy import create_engine

            engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
            with engine.connect() as conn:
                sent = conn.execute(sql("SELECT count(*) FROM sms_nurture_message WHERE tenant_id = :t "
                                        "AND status = 'sent'"), {"t": tenant.id}).scalar()
            engine.dispose()
        pelago_counts = counts(pelago_url)

        bare_s = (bare_runs[0] + bare_loop(n, workers, body, bare_url, "after")) / 2
        bare_counts = counts(bare_url)
    finally:
        for proc in (pelago_gw, bare_gw):
            if proc.stdin:
                proc.stdin.close()
            proc.wait(10)
    if sent != n or pelago_counts != {"received": n, "distinct": n, "doubles": 0} or bare_counts["distinct"] != 2 * n:
        raise AssertionError(f"sent {sent}; gateway {pelago_counts}; bare {bare_counts}")
    return result(
        "sms_dispatch", bare_s / pelago_s,
        messages=n, workers=workers, pelago_s=round(pelago_s, 2), bare_s=round(bare_s, 2),
        bare_before_s=round(bare_runs[0], 2), bare_after_s=round(2 * bare_s - bare_runs[0], 2),
        pelago_per_s=round(n / pelago_s), bare_per_s=round(n / bare_s), double_sends=pelago_counts["doubles"],
        sent_by_worker="/".join(str(s) for s in sent_by), goal=GOAL,
    )


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.split("\n", 1)[0], 100_000)
    parser.add_argument("--workers", type=int, default=4, help="dispatch processes, and bare posters (default 4)")
    args = parser.parse_args(argv)
    if args.db != "postgresql":
        parser.error("sms_dispatch runs on PostgreSQL")
    measure(args.rows, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
