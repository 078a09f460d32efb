"""Webhook submissions after the 202: the router's lease, resume, fencing and order per phone (issue 16).

Submissions are stored here as the webhook stores them (``submissions.accept``)
without starting a router, so each test decides when routers run: in this
process, in threads, or in a real process killed with SIGKILL mid-batch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy import text as sa_text

from pelago.core.models import Lead, StoredSubmission, Touch
from pelago.core.services import submissions as svc
from pelago.core.services.intake import Submission


@pytest.fixture(autouse=True)
def _drained(app, clock):
    """Leave nothing accepted for the next test (the run's database is shared; a router takes every tenant's)."""
    yield
    clock.at = max(clock.at, datetime.now(timezone.utc)) + svc.LEASE * 2
    svc.route_pending(app.extensions["pelago"])


def store(t, items: list[tuple[str, str]], channel: str = "site") -> list[int]:
    """Accept ``(phone, external id)`` submissions for ``t`` as the webhook would, with no router started."""
    ids = []
    with t.runtime.sessions() as session:
        for phone, external in items:
            sub = Submission(data={"phone": phone, "name": f"n-{external}"}, touch={"channel": channel},
                             raw={"phone": phone, "external_id": external}, key=f"test:{external}")
            dedupe, errors = svc.check(sub, "CN")
            assert not errors
            sid, fresh = svc.accept(session, tenant_id=t.id, channel_id=None, sub=sub, dedupe=dedupe,
                                    now=t.runtime.clock())
            assert fresh
            ids.append(sid)
        session.info.pop(svc.KICK, None)  # no router: the test starts them
        session.commit()
    return ids


def rows(t) -> dict[int, Any]:
    with t.runtime.sessions() as s:
        return {r.id: r for r in s.execute(
            select(StoredSubmission.id, StoredSubmission.status, StoredSubmission.outcome, StoredSubmission.lead_id,
                   StoredSubmission.touch_id, StoredSubmission.attempts, StoredSubmission.errors)
            .where(StoredSubmission.tenant_id == t.id)
        )}


def count(t, model: Any) -> int:
    with t.runtime.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(model.tenant_id == t.id)) or 0)


def assert_each_once(t, ids: list[int], phones: int) -> None:
    """Every submission processed, with its own touch; one lead per phone; nothing else written."""
    got = rows(t)
    assert {got[i].status for i in ids} == {"processed"}, [got[i] for i in ids]
    assert len({got[i].touch_id for i in ids}) == len(ids)
    assert count(t, Touch) == len(ids) and count(t, Lead) == phones
    with t.runtime.sessions() as s:
        touched = dict(s.execute(select(Touch.id, Touch.lead_id).where(Touch.tenant_id == t.id)).all())
    assert all(touched[got[i].touch_id] == got[i].lead_id for i in ids)


def test_a_router_routes_what_was_accepted_in_order(tenant):
    ids = store(tenant, [("13800138100", "a"), ("13800138101", "b"), ("13800138100", "c")])
    assert {r.status for r in rows(tenant).values()} == {"accepted"}
    counts = svc.route_pending(tenant.runtime)
    assert counts["processed"] >= 3 and counts["failed"] == 0  # (the run's database is shared by every test)
    got = rows(tenant)
    assert [got[i].outcome for i in ids] == ["created", "created", "merged"]
    assert got[ids[2]].lead_id == got[ids[0]].lead_id
    assert_each_once(tenant, ids, phones=2)
    svc.route_pending(tenant.runtime)
    assert rows(tenant) == got  # routed once: a second router finds nothing of it
    answer = tenant.get(f"/api/v1/submissions/{ids[2]}", "manager").get_json()
    assert (answer["status"], answer["outcome"], answer["lead_id"], answer["attempts"]) == \
        ("processed", "merged", got[ids[0]].lead_id, 1)
    assert tenant.get(f"/api/v1/submissions/{ids[2]}", "rep").status_code == 403



def test_a_processed_submissions_errors_are_sql_null_on_both_databases(tenant):
    # The batch's one statement (PostgreSQL) wrote SQL NULL, the executemany (SQLite) JSON 'null':
    # `errors IS NULL` must mean "no errors" on both.
    ids = store(tenant, [("13800138103", "e1"), ("13800138104", "e2")])
    svc.route_pending(tenant.runtime)
    with tenant.runtime.engine.connect() as conn:
        nulls = conn.execute(sa_text(
            "SELECT count(*) FROM core_submission WHERE tenant_id = :t AND status = 'processed' AND errors IS NULL"
        ), {"t": tenant.id}).scalar()
    assert nulls == len(ids)

def test_a_submission_is_404_in_another_tenant(tenant, other_tenant):
    (sid,) = store(tenant, [("13800138102", "x")])
    assert tenant.get(f"/api/v1/submissions/{sid}").status_code == 200
    assert other_tenant.get(f"/api/v1/submissions/{sid}").status_code == 404


def test_a_phone_held_by_another_router_waits_for_it(tenant, clock):
    """Order per phone: a later submission of a phone is not claimed while an earlier one is leased."""
    first, other, later = store(tenant, [("13800138103", "1"), ("13800138104", "2"), ("13800138103", "3")])
    rt = tenant.runtime
    assert [r.id for r in svc.claim(rt, "router-a", 1)] == [first]
    assert [r.id for r in svc.claim(rt, "router-b", 10)] == [other]  # ``later`` waits for ``first``
    assert svc.claim(rt, "router-c", 10) == []
    clock.advance(seconds=svc.LEASE.total_seconds() + 1)  # leave nothing leased for the next tests
    svc.route_pending(rt)
    assert {r.status for r in rows(tenant).values()} == {"processed"}


def test_a_stalled_router_is_fenced_and_its_batch_routed_once(tenant, clock):
    ids = store(tenant, [("13800138105", "1"), ("13800138106", "2")])
    rt = tenant.runtime
    stalled = svc.claim(rt, "stalled", 10)
    assert [r.id for r in stalled] == ids
    assert svc.claim(rt, "early", 10) == []  # leased: nobody else takes them
    clock.advance(seconds=svc.LEASE.total_seconds() + 1)
    taken = svc.claim(rt, "next", 10)  # the lease expired: the next router takes them
    counts = {"batches": 0, "processed": 0, "failed": 0}
    svc.process(rt, tenant.id, stalled, "stalled", counts)  # the stalled router wakes up: writes nothing
    assert counts["processed"] == 0 and count(tenant, Touch) == 0
    svc.process(rt, tenant.id, taken, "next", counts)
    assert counts["processed"] == 2
    assert_each_once(tenant, ids, phones=2)
    assert {rows(tenant)[i].attempts for i in ids} == {2}


def test_a_submission_whose_routers_keep_dying_is_failed(tenant, clock):
    (sid,) = store(tenant, [("13800138107", "1")])
    rt = tenant.runtime
    for _ in range(svc.MAX_ATTEMPTS):
        assert len(svc.claim(rt, "dies", 10)) == 1  # and the router dies: the lease runs out
        clock.advance(seconds=svc.LEASE.total_seconds() + 1)
    assert svc.route_pending(rt)["failed"] >= 1
    got = rows(tenant)[sid]
    assert got.status == "failed" and "submission" in got.errors and count(tenant, Lead) == 0


ROUTER = textwrap.dedent("""
    import os, signal, sys
    from pelago.core.db import make_engine
    from pelago.core.host import PluginHost
    from pelago.core.runtime import Runtime
    from pelago.core.services import submissions as svc

    url = sys.argv[1]
    runtime = Runtime(PluginHost((), strict=True), make_engine(url))
    real_ingest = svc.ingest
    batches = []

    def ingest(ctx, subs, **kw):
        outcomes = real_ingest(ctx, subs, **kw)
        batches.append(len(subs))
        if len(batches) == 2:  # the second batch is written but not committed: the process vanishes
            os.kill(os.getpid(), signal.SIGKILL)
        return outcomes

    svc.ingest = ingest
    svc.route_pending(runtime, batch=4)
""")


def test_a_router_killed_with_sigkill_mid_batch_loses_nothing_and_doubles_nothing(tenant, db_url, clock):
    """A real router process, SIGKILLed inside its second batch's transaction: every submission ends as
    exactly one lead or touch once the next router has resumed after the lease."""
    phones = [f"138001382{i:02d}" for i in range(7)]
    items = [(phones[i % 7], f"k{i}") for i in range(11)]  # 7 phones, 4 of them twice
    ids = store(tenant, items)
    # The router drains every tenant's queue and is killed by its batch count: only this test's rows may
    # wait in it (another test may have left accepted submissions in this database).
    with tenant.runtime.engine.begin() as conn:
        conn.execute(sa_text("UPDATE core_submission SET status = 'failed' WHERE status = 'accepted' "
                             "AND tenant_id <> :t"), {"t": tenant.id})
    proc = subprocess.run([sys.executable, "-c", ROUTER, db_url], env={**os.environ}, capture_output=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    got = rows(tenant)
    assert [got[i].status for i in ids[:4]] == ["processed"] * 4  # the first batch was committed
    assert {got[i].status for i in ids[4:]} == {"accepted"}  # the rest is still waiting, leased or not
    assert count(tenant, Touch) == 4
    # The dead router leased on the real clock; resume from a clock past its lease (the scheduler's tick).
    clock.at = datetime.now(timezone.utc) + svc.LEASE + timedelta(minutes=1)
    from pelago.testing import scheduler_tick

    scheduler_tick(tenant.runtime, tenant.id)
    assert_each_once(tenant, ids, phones=7)
    got = rows(tenant)
    assert {got[i].attempts for i in ids[4:8]} == {2}  # the killed batch was taken again, once


@pytest.mark.postgres
def test_two_concurrent_routers_never_process_the_same_submission(tenant):
    n = 120
    ids = store(tenant, [(f"1390013{i:04d}", f"c{i}") for i in range(n)])
    results: list[dict[str, int]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def router() -> None:
        barrier.wait()
        counts = svc.route_pending(tenant.runtime, batch=7)
        with lock:
            results.append(counts)

    threads = [threading.Thread(target=router) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert sum(r["processed"] for r in results) >= n and all(r["failed"] == 0 for r in results)
    assert_each_once(tenant, ids, phones=n)
    assert {r.attempts for r in rows(tenant).values()} == {1}  # no submission was claimed twice


@pytest.mark.postgres
def test_a_burst_of_one_phone_from_8_threads_gives_one_lead_in_order(tenant):
    """8 webhook calls with the same phone at once (distinct external ids): each request's router runs
    right after its commit, in its own thread; one lead, 8 touches, the first accepted made the lead."""
    import json

    from tests.test_concurrency import run_parallel
    from tests.test_webhook import channel, send

    ch = channel(tenant)
    responses = run_parallel(8, lambda i: send(tenant, ch, body=json.dumps(
        {"phone": "13800138300", "name": f"n{i}", "external_id": f"burst-{i}"}).encode()))
    assert sorted(r.status_code for r in responses) == [202] * 8, [r.get_json() for r in responses]
    ids = sorted(r.get_json()["id"] for r in responses)
    assert_each_once(tenant, ids, phones=1)
    got = rows(tenant)
    assert [got[i].outcome for i in ids] == ["created"] + ["merged"] * 7  # order per phone kept


def test_the_embedded_servers_job_thread_routes_accepted_submissions(make_app, tmp_path):
    """Without Redis, ``pelago serve`` runs the router on its background job thread, one at a time."""
    from pelago.core.jobs import ThreadQueue
    from pelago.testing import new_tenant
    from tests.test_webhook import channel, send

    app = make_app(())
    t = new_tenant(app)
    rt = t.runtime
    rt.queue = ThreadQueue(rt)  # type: ignore[assignment]
    ch = channel(t)
    answers = [send(t, ch, {"phone": f"1380013840{i}", "external_id": f"e{i}"}) for i in range(5)]
    assert [a.status_code for a in answers] == [202] * 5
    rt.queue.join()
    assert_each_once(t, [a.get_json()["id"] for a in answers], phones=5)


def test_a_rolled_back_accept_starts_no_router(tenant):
    rt = tenant.runtime
    started: list[str] = []
    real = rt.queue.kick
    rt.queue.kick = lambda name: started.append(name)  # type: ignore[method-assign]
    try:
        with rt.sessions() as session:
            sub = Submission(data={"phone": "13800138500"}, touch={}, raw={}, key="rolled-back")
            svc.accept(session, tenant_id=tenant.id, channel_id=None, sub=sub, dedupe="+8613800138500",
                       now=rt.clock())
            session.rollback()
            session.execute(update(StoredSubmission).where(StoredSubmission.id == -1).values(attempts=0))
            session.commit()
        assert started == [] and rows(tenant) == {}
    finally:
        rt.queue.kick = real  # type: ignore[method-assign]


def test_a_retry_after_retention_deleted_its_submission_is_accepted_and_replays_the_touch(tenant, clock):
    """Retention forgets the submission, not the touch's key: the retry is a new submission, routed
    normally, and finds the first touch (nothing written twice)."""
    from pelago.core.retention import Retention, sweep

    (first,) = store(tenant, [("13800138301", "ret-1")])
    svc.route_pending(tenant.runtime)
    before = rows(tenant)[first]
    assert (before.status, before.outcome) == ("processed", "created")
    clock.advance(days=31)
    assert sweep(tenant.runtime, Retention())["submissions_processed"] >= 1
    assert first not in rows(tenant)
    (again,) = store(tenant, [("13800138301", "ret-1")])  # accepted afresh: the key is free again
    svc.route_pending(tenant.runtime)
    after = rows(tenant)[again]
    assert (after.status, after.outcome, after.lead_id, after.touch_id) == (
        "processed", "replayed", before.lead_id, before.touch_id)
    assert count(tenant, Touch) == 1 and count(tenant, Lead) == 1


class _Kicks:
    """Records the routers a router asks for (stands in for the queue: nothing runs)."""

    def __init__(self) -> None:
        self.kicks: list[tuple[str, int]] = []

    def kick(self, name: str, slot: int = 0) -> None:
        self.kicks.append((name, slot))

    def settle(self, name: str, slot: int = 0) -> None:
        pass


def test_a_claimed_backlog_starts_one_helper_router_and_a_small_batch_none(tenant):
    rt = tenant.runtime
    real, rt.queue = rt.queue, _Kicks()  # type: ignore[assignment]
    try:
        store(tenant, [(f"1390015{i:04d}", f"h{i}") for i in range(6)])
        svc.route_pending(rt, batch=4, helper_at=4)  # 4 rows (a backlog), then 2
        assert rt.queue.kicks == [(svc.ROUTE_JOB, 1)]
        store(tenant, [("13900160000", "h-small")])
        svc.route_pending(rt, batch=4, helper_at=4)
        assert rt.queue.kicks == [(svc.ROUTE_JOB, 1)]
    finally:
        rt.queue = real


def test_a_helper_router_drains_and_starts_no_router(tenant):
    rt = tenant.runtime
    real, rt.queue = rt.queue, _Kicks()  # type: ignore[assignment]
    try:
        ids = store(tenant, [(f"1390017{i:04d}", f"hh{i}") for i in range(3)])
        counts = svc.route_job(rt, helper=True)
        assert counts["processed"] == 3 and rt.queue.kicks == []
        assert_each_once(tenant, ids, phones=3)
    finally:
        rt.queue = real


def test_the_inline_and_thread_queues_start_no_helper(tenant):
    """One thread (or the caller's) runs one job at a time: a helper would only run after the router."""
    from pelago.core.jobs import InlineQueue, ThreadQueue

    ran: list[str] = []
    for queue in (InlineQueue(tenant.runtime), ThreadQueue(tenant.runtime)):
        queue.enqueue = lambda name, **kw: ran.append(name)  # type: ignore[method-assign]
        queue.kick(svc.ROUTE_JOB, 1)
        queue.settle(svc.ROUTE_JOB, 1)
    assert ran == []


def test_rq_starts_one_router_and_one_helper_each_with_its_own_flag(tenant, redis_url):
    from rq import Queue

    from pelago.core.jobs import RqQueue

    name = f"routed-{os.getpid()}-{tenant.id}"
    queue = RqQueue(tenant.runtime, redis_url, name)
    try:
        for _ in range(3):  # a burst: one router, and (a backlog) one helper
            queue.kick(svc.ROUTE_JOB)
            queue.kick(svc.ROUTE_JOB, 1)
        jobs = Queue(f"{name}-intake", connection=queue.redis).jobs
        assert [(j.args[0], j.args[1]) for j in jobs] == [(svc.ROUTE_JOB, {}), (svc.ROUTE_JOB, {"helper": True})]
        queue.settle(svc.ROUTE_JOB, 1)  # the helper drained: the next backlog starts one again
        queue.kick(svc.ROUTE_JOB)
        queue.kick(svc.ROUTE_JOB, 1)
        assert [j.args[1] for j in Queue(f"{name}-intake", connection=queue.redis).jobs] == [
            {}, {"helper": True}, {"helper": True}]
        queue.settle(svc.ROUTE_JOB, 1)
        queue.enqueue("deliver", event_ids=[1])  # another job waits on the default queue:
        queue.kick(svc.ROUTE_JOB, 1)  # no helper, so the second worker takes that job
        assert len(Queue(f"{name}-intake", connection=queue.redis).jobs) == 3
        assert not queue.redis.exists(queue._flag(svc.ROUTE_JOB, 1))
    finally:
        for key in queue.redis.keys(f"*{name}*"):
            queue.redis.delete(key)


@pytest.mark.postgres
def test_a_router_and_its_helper_share_a_backlog_each_submission_once_in_order_per_phone(tenant):
    """The router and a helper drain together (as two rq workers would): every submission once, and a
    phone's submissions in the order they were accepted."""
    items = [(f"1390018{i % 30:04d}", f"rh{i}") for i in range(150)]  # 30 phones, 5 submissions each
    ids = store(tenant, items)
    barrier = threading.Barrier(2)
    results: list[dict[str, int]] = []
    lock = threading.Lock()

    def router(helper: bool) -> None:
        barrier.wait()
        counts = svc.route_pending(tenant.runtime, batch=9, helper_at=None if helper else 9)
        with lock:
            results.append(counts)

    real, tenant.runtime.queue = tenant.runtime.queue, _Kicks()  # type: ignore[assignment]
    try:
        threads = [threading.Thread(target=router, args=(h,)) for h in (False, True)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
    finally:
        tenant.runtime.queue = real
    assert sum(r["processed"] for r in results) == 150
    assert_each_once(tenant, ids, phones=30)
    got = rows(tenant)
    for phone in {p for p, _ in items}:
        mine = [i for i, (p, _) in zip(ids, items, strict=True) if p == phone]
        assert [got[i].outcome for i in mine] == ["created"] + ["merged"] * 4


def test_a_backlog_larger_than_the_claims_window_is_drained_in_order_per_phone(tenant):
    """A claim reads only the oldest rows (its window), yet a phone whose first submission another router
    holds still waits, and every phone's submissions are routed in the order they were accepted."""
    items = [(f"1390027{i % 7:04d}", f"win{i}") for i in range(40)]  # 7 phones; 5 times the window
    ids = store(tenant, items)
    rt = tenant.runtime
    held = svc.claim(rt, "router-a", 1, window=8)
    assert [r.id for r in held] == [ids[0]]
    waiting = {i for i, (p, _) in zip(ids, items, strict=True) if p == items[0][0]} - {ids[0]}
    counts = {"batches": 0, "processed": 0, "failed": 0}
    routed: list[int] = []
    while batch := svc.claim(rt, f"router-b{len(routed)}", 3, window=8):
        assert not waiting & {r.id for r in batch}  # the held phone's later rows are never taken
        svc.process(rt, tenant.id, batch, f"router-b{len(routed)}", counts)
        routed += [r.id for r in batch]
    assert sorted(routed) == sorted(set(ids) - waiting - {ids[0]})  # everything else, beyond the first window
    svc.process(rt, tenant.id, held, "router-a", counts)  # router A finishes: the phone goes on
    svc.route_pending(rt, batch=3, window=8)
    assert_each_once(tenant, ids, phones=7)
    got = rows(tenant)
    for phone in {p for p, _ in items}:
        mine = [i for i, (p, _) in zip(ids, items, strict=True) if p == phone]
        # each phone's first made the lead, the held one too: none of its later ones went before it
        assert [got[i].outcome for i in mine] == ["created"] + ["merged"] * (len(mine) - 1)
    assert {got[i].attempts for i in ids} == {1}  # each claimed once
