"""pool_claim: claims per second with 16 concurrent claimers, versus a bare conditional UPDATE.

Every lead is attempted twice at once: a shared queue hands each lead id to
two of the 16 claimer threads in a row, so half the attempts race and lose.
Pool side: :func:`pelago.plugins.pool.service.claim` for one lead, as a rep,
committed (the conditional UPDATE with its pool conditions, the entry leaving
the pool, the daily counter upsert, ``check_assign``, the ledger row and the
``lead_assigned`` outbox event), or rolled back on its 409; each claimer's
session is bound to one connection it holds for the whole race, as each
claimer of the other two sides holds one (until 6 December the session took
a connection from the pool and gave it back at every attempt, a cost the
sides it is compared with never paid). Baseline: ``UPDATE
core_lead SET owner_id = :me WHERE id = :id AND owner_id IS NULL`` in its own
transaction. Each side has its own tenant with the same number of leads in the
same tables; the two sides alternate in halves. Event delivery happens after
commit in workers (rq) and is not timed on either side: the runtime's queue
only records the events here.

A third side is the minimal SQL making the same writes: ``pool_take``, the
database function a claim makes its writes with on PostgreSQL, called on a
bare connection with the pool's parameters (no service, no hooks): what the
claim's database work costs, as against the Python of the service around
it. Two ratios, side by side: ``ratio`` (pool / bare ``UPDATE``) and
``ratio_sql`` (pool / ``pool_take`` on a bare connection, the goal: ≥ 0.8;
``function_ratio`` is ``pool_take`` / bare). Each side also
reports its interpreter time per attempt (``cpu_ms_per_attempt``): the 16
claimer threads share one interpreter lock, so on a small machine that, not
the database, bounds the rate.

Checked: every lead claimed exactly once on each side (zero double claims:
one winning attempt per lead, one ``claimed`` ledger row per lead, its owner
the winner).

    python -m bench.pool_claim [--rows 20000]
"""

from __future__ import annotations

import random
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any

from bench.common import (
    RecordingQueue,
    arguments,
    bench_database,
    log,
    make_runtime,
    make_tenant,
    peak_rss_mb,
    result,
)

CLAIMERS = 16
GOAL = ">=0.8"


def load_leads(runtime: Any, tenant_id: int, n: int, pool_id: int | None, offset: int) -> list[int]:
    """``n`` unowned leads (and, with ``pool_id``, their pool entries), set-based."""
    from sqlalchemy import text

    with runtime.engine.begin() as conn:
        ids = list(conn.execute(text("""
            INSERT INTO core_lead (tenant_id, name, phone, stage, is_customer, locked, attributes,
                                   created_at, updated_at, stage_changed_at, version)
            SELECT :t, 'lead ' || g, '+86139' || lpad((g + :off)::text, 8, '0'), 'new', false, false, '{}',
                   now() - interval '10 days', now() - interval '10 days', now() - interval '10 days', 1
            FROM generate_series(1, :n) g
            RETURNING id"""), {"t": tenant_id, "n": n, "off": offset}).scalars())
        if pool_id is not None:
            conn.execute(text("""
                INSERT INTO pool_entry (tenant_id, lead_id, pool_id, entered_at, reason, note)
                SELECT :t, id, :p, now() - interval '10 days', 'created', '' FROM core_lead WHERE tenant_id = :t"""),
                {"t": tenant_id, "p": pool_id})
        conn.execute(text("ANALYZE core_lead"))
        conn.execute(text("ANALYZE pool_entry"))
    return ids


def race(attempts: list[int], claim_one: Any) -> tuple[float, float, dict[int, int]]:
    """Run ``attempts`` (lead ids, each twice in a row) on 16 threads; ``(seconds, cpu seconds, wins per lead)``."""
    lock = threading.Lock()
    position = [0]
    wins: dict[int, int] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(CLAIMERS + 1)

    def worker(k: int) -> None:
        try:
            state = claim_one.setup(k)
        except BaseException as exc:  # noqa: BLE001 - reported below; the others must not wait for us
            errors.append(exc)
            barrier.abort()
            return
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            claim_one.teardown(state)
            return
        try:
            while True:
                with lock:
                    if position[0] >= len(attempts):
                        return
                    lead = attempts[position[0]]
                    position[0] += 1
                if claim_one(state, lead):
                    with lock:
                        wins[lead] = wins.get(lead, 0) + 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            claim_one.teardown(state)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(CLAIMERS)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        for t in threads:
            t.join()
        raise errors[0] from None
    started, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if errors:
        raise errors[0]
    return elapsed, cpu, wins


class PoolClaim:
    """The pool's claim, through its service, as rep ``k`` (one session per claimer)."""

    def __init__(self, runtime: Any, tenant: Any, pool_id: int) -> None:
        from pelago.plugin import Conflict
        from pelago.plugins.pool import service

        self.runtime, self.tenant, self.pool_id = runtime, tenant, pool_id
        self.claim, self.conflict = service.claim, Conflict  # imported once, as the function side's SQL is
        self.users: dict[int, Any] = {}  # the strong reference each request's ``g`` holds to its user
        with runtime.tenant_context(tenant.id) as ctx:
            self.state = ctx.tenant

    def setup(self, k: int) -> Any:
        from pelago.plugin import Actor, User

        # Each claimer holds one connection for the whole race, as the function and bare sides
        # do: the session is bound to it (a tenant session as ``tenant_session`` makes, on that
        # connection), so no side checks a connection out of the pool per attempt. Until
        # 6 December the session checked one out and back in at every attempt, which the
        # sides it is compared with never do.
        session = self.runtime.sessions(bind=self.runtime.engine.connect())
        session.info["tenant_id"] = self.tenant.id
        # A claim request finds its user loaded and held in its session (the API key check loads
        # it, hostapp/auth.py). One session serves all of this claimer's attempts here: hold the
        # user the same way, and keep it loaded across the commits as each request would have it.
        session.expire_on_commit = False
        user = session.get(User, self.tenant.rep_ids[k])
        actor = Actor(user_id=user.id, role="rep", tenant_id=self.tenant.id, team_id=self.tenant.team_id)
        ctx = self.runtime.context(session, self.state, actor)
        self.users[k] = user
        session.commit()
        return ctx

    def __call__(self, ctx: Any, lead: int) -> bool:
        try:
            self.claim(ctx, [lead], self.pool_id)
        except self.conflict:
            ctx.session.rollback()
            return False
        ctx.session.commit()
        return True

    def teardown(self, ctx: Any) -> None:
        conn = ctx.session.bind
        ctx.session.close()
        conn.close()


class BareClaim:
    """The baseline: one conditional UPDATE per attempt, in its own transaction."""

    def __init__(self, runtime: Any, tenant: Any) -> None:
        from sqlalchemy import text

        self.runtime, self.tenant = runtime, tenant
        self.stmt = text("UPDATE core_lead SET owner_id = :me WHERE tenant_id = :t AND id = :id AND owner_id IS NULL")

    def setup(self, k: int) -> Any:
        return (self.runtime.engine.connect(), self.tenant.rep_ids[k])

    def __call__(self, state: Any, lead: int) -> bool:
        conn, me = state
        with conn.begin():
            return conn.execute(self.stmt, {"me": me, "t": self.tenant.id, "id": lead}).rowcount == 1

    def teardown(self, state: Any) -> None:
        state[0].close()


class FunctionClaim:
    """The floor: the claim's database function on a bare connection, one transaction per attempt."""

    def __init__(self, runtime: Any, tenant: Any, pool_id: int) -> None:
        from pelago.plugins.pool.taking import TAKE_SQL

        self.runtime, self.tenant, self.pool_id, self.sql = runtime, tenant, pool_id, TAKE_SQL

    def setup(self, k: int) -> Any:
        return (self.runtime.engine.connect(), self.tenant.rep_ids[k])

    def __call__(self, state: Any, lead: int) -> bool:
        conn, me = state
        now = datetime.now(timezone.utc)
        with conn.begin():
            rows = conn.exec_driver_sql(self.sql, {
                "tenant_id": self.tenant.id, "user_id": me, "team_id": self.tenant.team_id,
                "pool_id": self.pool_id, "lead_ids": [lead], "now": now, "day": now.date(),
                "protect_before": None, "cooldown_before": None, "count": True, "daily_limit": None,
                "reason": "claimed", "note": "", "actor_id": me, "config_version": None, "explain": True,
                "subscribers": ["pool"],
            }).all()
            return any(r.kind == "taken" for r in rows)

    def teardown(self, state: Any) -> None:
        state[0].close()


def twice(ids: list[int], seed: int) -> list[int]:
    shuffled = list(ids)
    random.Random(seed).shuffle(shuffled)
    return [lead for lead in shuffled for _ in range(2)]


def check(runtime: Any, tenant_id: int, ids: list[int], wins: dict[int, int], ledger: bool) -> int:
    """Zero double claims: one win per lead, and (pool) one ``claimed`` ledger row per lead."""
    from sqlalchemy import text

    doubles = sum(1 for lead in ids if wins.get(lead, 0) != 1)
    with runtime.engine.connect() as conn:
        unowned = conn.execute(text("SELECT count(*) FROM core_lead WHERE tenant_id = :t AND owner_id IS NULL"),
                               {"t": tenant_id}).scalar()
        if ledger:
            rows = conn.execute(text("""SELECT count(*) FROM (SELECT lead_id FROM core_ownership_change
                WHERE tenant_id = :t AND reason = 'claimed' GROUP BY lead_id HAVING count(*) <> 1) x"""),
                {"t": tenant_id}).scalar()
            claimed = conn.execute(text("SELECT count(*) FROM core_ownership_change WHERE tenant_id = :t AND "
                                        "reason = 'claimed'"), {"t": tenant_id}).scalar()
            doubles += rows + abs(claimed - len(ids))
    if unowned:
        raise AssertionError(f"{unowned} leads were never claimed")
    return doubles


def measure(n: int) -> dict[str, Any]:
    from pelago.plugins.pool import pools

    with bench_database("postgresql") as url:
        runtime = make_runtime(url, plugins=("pool",))
        queue = RecordingQueue()
        runtime.queue = queue  # type: ignore[assignment]
        pool_tenant = make_tenant(runtime, reps=CLAIMERS, auto_routing=False, plugins=("pool",))
        floor_tenant = make_tenant(runtime, reps=CLAIMERS, auto_routing=False, plugins=("pool",))
        bare_tenant = make_tenant(runtime, reps=CLAIMERS, auto_routing=False)
        pool_ids_of = {}
        for tenant in (pool_tenant, floor_tenant):
            with runtime.tenant_context(tenant.id) as ctx:
                pool_ids_of[tenant.id] = pools.ensure_default(ctx)
        log(f"loading {n:,} leads for each of the pool, the function alone and the baseline")
        ids = {
            "pool": load_leads(runtime, pool_tenant.id, n, pool_ids_of[pool_tenant.id], 0),
            "function": load_leads(runtime, floor_tenant.id, n, pool_ids_of[floor_tenant.id], n),
            "bare": load_leads(runtime, bare_tenant.id, n, None, 2 * n),
        }
        sides = {
            "bare": BareClaim(runtime, bare_tenant),
            "pool": PoolClaim(runtime, pool_tenant, pool_ids_of[pool_tenant.id]),
            "function": FunctionClaim(runtime, floor_tenant, pool_ids_of[floor_tenant.id]),
        }
        seconds = dict.fromkeys(sides, 0.0)
        cpu = dict.fromkeys(sides, 0.0)
        wins: dict[str, dict[int, int]] = {name: {} for name in sides}
        half = n // 2
        for part in (slice(0, half), slice(half, n)):  # the sides take turns, in halves
            for seed, name in enumerate(sides):
                log(f"{name}: {part.stop - part.start:,} leads, {CLAIMERS} claimers, each lead twice")
                took, used, won = race(twice(ids[name][part], seed), sides[name])
                seconds[name] += took
                cpu[name] += used
                wins[name].update(won)
        doubles = check(runtime, pool_tenant.id, ids["pool"], wins["pool"], ledger=True)
        doubles += check(runtime, floor_tenant.id, ids["function"], wins["function"], ledger=True)
        doubles += check(runtime, bare_tenant.id, ids["bare"], wins["bare"], ledger=False)
        events = queue.events()
        runtime.engine.dispose()
    rate = {name: n / s for name, s in seconds.items()}
    return result(
        "pool_claim", rate["pool"] / rate["bare"], ratio_sql=round(rate["pool"] / rate["function"], 3),
        leads=n, claimers=CLAIMERS, attempts_per_lead=2, pool_claims_per_s=round(rate["pool"]),
        bare_claims_per_s=round(rate["bare"]), function_claims_per_s=round(rate["function"]),
        function_ratio=round(rate["function"] / rate["bare"], 3),
        cpu_ms_per_attempt_pool=round(cpu["pool"] / (2 * n) * 1000, 3),
        cpu_ms_per_attempt_function=round(cpu["function"] / (2 * n) * 1000, 3),
        cpu_ms_per_attempt_bare=round(cpu["bare"] / (2 * n) * 1000, 3),
        pool_s=round(seconds["pool"], 2), bare_s=round(seconds["bare"], 2), double_claims=doubles, events=events,
        peak_rss_mb=round(peak_rss_mb(), 1), goal_sql=GOAL,
    )


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.split("\n", 1)[0], 20_000)
    args = parser.parse_args(argv)
    if args.db != "postgresql":
        parser.error("pool_claim runs on PostgreSQL (concurrency)")
    record = measure(args.rows)
    return 0 if record["figures"]["double_claims"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
