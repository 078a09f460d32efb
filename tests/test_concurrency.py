"""Concurrency claims, proven with real threads on PostgreSQL."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from pelago.core.models import Deal, Lead, Refund, Touch

pytestmark = pytest.mark.postgres


def run_parallel(n: int, fn):
    barrier = threading.Barrier(n)

    def go(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def test_same_phone_from_8_threads_gives_one_lead_and_8_touches(tenant):
    formats = ["13800138900", "+86 138 0013 8900", "138-0013-8900", "008613800138900"]

    def submit(i):
        return tenant.post("/api/v1/leads", json={"name": f"n{i}", "phone": formats[i % 4]})

    responses = run_parallel(8, submit)
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.get_json()["id"] for r in responses}) == 1
    assert sum(r.get_json()["merged"] for r in responses) == 7
    with tenant.runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Lead).where(Lead.tenant_id == tenant.id)) == 1
        assert s.scalar(select(func.count()).select_from(Touch).where(Touch.tenant_id == tenant.id)) == 8


def test_same_idempotency_key_from_8_threads_creates_one_touch(tenant):
    def submit(i):
        return tenant.post("/api/v1/leads", json={"phone": "13800138901"}, headers={"Idempotency-Key": "same"})

    responses = run_parallel(8, submit)
    assert all(r.status_code in (200, 201, 409) for r in responses), [r.get_json() for r in responses]
    assert [r.status_code for r in responses].count(201) == 1
    with tenant.runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Touch).where(Touch.tenant_id == tenant.id)) == 1
    again = tenant.post("/api/v1/leads", json={"phone": "13800138901"}, headers={"Idempotency-Key": "same"})
    assert again.status_code == 200 and again.get_json()["replayed"] is True


def test_concurrent_refunds_never_exceed_the_deal(tenant):
    lead = tenant.lead("13800138902")
    deal = tenant.post(f"/api/v1/leads/{lead['id']}/deals", json={"amount": "100.00"}).get_json()

    def refund(i):
        return tenant.post(f"/api/v1/deals/{deal['id']}/refunds", json={"amount": "30.00", "reason": f"r{i}"})

    codes = [r.status_code for r in run_parallel(8, refund)]
    assert codes.count(201) == 3 and codes.count(422) == 5
    with tenant.runtime.sessions() as s:
        total = s.scalar(select(func.sum(Refund.amount)).where(Refund.deal_id == deal["id"]))
        stored = s.get(Deal, deal["id"])
    assert total == Decimal("90.00") and stored.refunded == Decimal("90.00")


def test_concurrent_reassignments_leave_one_consistent_owner(tenant):
    lead = tenant.lead("13800138903")
    targets = [tenant.users["rep"], tenant.users["rep2"]]

    def assign(i):
        return tenant.post(f"/api/v1/leads/{lead['id']}/assign", "manager", json={"user_id": targets[i % 2]})

    responses = run_parallel(8, assign)
    assert all(r.status_code in (200, 409) for r in responses)
    final = tenant.get(f"/api/v1/leads/{lead['id']}").get_json()
    history = tenant.get(f"/api/v1/leads/{lead['id']}/history").get_json()["items"]
    ledger = [h for h in history if h["type"] == "ownership"]
    # The ledger is a chain: each change starts where the previous ended.
    for before, after in zip(ledger, ledger[1:], strict=False):
        assert after["from_user_id"] == before["to_user_id"]
    assert ledger[-1]["to_user_id"] == final["owner_id"]


def test_concurrent_plugin_switches_respect_requirements(make_app):
    from tests.conftest import new_tenant

    app = make_app(("recorder", "needs_recorder"))
    t = new_tenant(app)
    t.put("/api/v1/plugins/recorder", json={"enabled": True})

    def switch(i):
        if i % 2:
            return t.put("/api/v1/plugins/needs_recorder", json={"enabled": True})
        return t.put("/api/v1/plugins/recorder", json={"enabled": False})

    codes = [r.status_code for r in run_parallel(8, switch)]
    assert set(codes) <= {200, 409}, codes
    plugins = {p["name"]: p["enabled"] for p in t.get("/api/v1/plugins").get_json()["items"]}
    assert not (plugins["needs_recorder"] and not plugins["recorder"])


def test_ledgers_are_append_only_in_the_database(tenant):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    tenant.lead("13800138904")
    with tenant.runtime.engine.connect() as conn:
        for table in ("core_ownership_change", "core_stage_change"):
            with pytest.raises(DBAPIError, match="append-only"):
                conn.execute(text(f"UPDATE {table} SET at = at WHERE tenant_id = :t"), {"t": tenant.id})
            conn.rollback()
            with pytest.raises(DBAPIError, match="append-only"):
                conn.execute(text(f"DELETE FROM {table} WHERE tenant_id = :t"), {"t": tenant.id})
            conn.rollback()


def test_batches_of_the_same_phones_in_opposite_orders_do_not_deadlock(tenant):
    """Every writer inserts new leads (and keyed touches) in one key order.

    core/services/intake.py sorts each batch by phone/email before its INSERT
    (and keyed touches by key); without that, two batches holding the same
    phones in opposite orders wait on each other's uncommitted index entries
    and PostgreSQL aborts one with "deadlock detected".
    """
    from pelago.core.services.intake import Submission, ingest
    phones = [f"1391{i:07d}" for i in range(3000)]
    barrier = threading.Barrier(4)

    def run(k: int) -> list[str]:
        order = phones if k % 2 else list(reversed(phones))
        barrier.wait()
        with tenant.runtime.tenant_context(tenant.id) as ctx:
            # routing off: no team lock to serialise the batches, only the unique index
            return [o.status for o in ingest(ctx, [Submission({"phone": p}) for p in order], routing=False)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(4)))
    assert sorted(r.count("created") for r in results) != [0, 0, 0, 0]
    assert sum(r.count("created") for r in results) == 3000
    with tenant.runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Lead).where(Lead.tenant_id == tenant.id)) == 3000
        owners = set(s.scalars(select(Lead.owner_id).where(Lead.tenant_id == tenant.id)))
    assert owners == {None}


def test_an_email_only_submission_racing_a_phone_one_never_misses_it(tenant):
    """Issue 14, finding 12: the email-only match was the last check-then-insert.

    Pairs race: an email-only submission and a phone+email one with the same
    email. Either order is legitimate (email-only first: two leads, by the
    rules; phone first: the email-only one merges into it), but an email-only
    lead made *after* the phone lead with its email was committed is the race
    lost: its id would be higher.
    """
    pairs, rounds = 12, 4

    def submit_round(r):
        def submit(i):
            pair, kind = divmod(i, 2)
            email = f"race{r}-{pair}@example.com"
            body = {"email": email} if kind == 0 else {"email": email, "phone": f"138{r:02d}01{pair:04d}"}
            return tenant.post("/api/v1/leads", json=body)
        return submit

    for r in range(rounds):
        responses = run_parallel(2 * pairs, submit_round(r))
        assert all(x.status_code in (200, 201) for x in responses), [x.get_json() for x in responses]
    with tenant.runtime.sessions() as s:
        rows = s.execute(select(Lead.id, Lead.email, Lead.phone).where(Lead.tenant_id == tenant.id)).all()
    for email in {f"race{r}-{pair}@example.com" for r in range(rounds) for pair in range(pairs)}:
        email_only = [lid for lid, e, p in rows if e == email and p is None]
        with_phone = [lid for lid, e, p in rows if e == email and p is not None]
        assert len(with_phone) == 1 and len(email_only) <= 1, rows
        if email_only:
            assert email_only[0] < with_phone[0], f"{email}: an email-only lead made after the phone lead"


def test_an_email_set_by_an_edit_is_seen_by_a_racing_email_only_submission(tenant):
    """Issue 14 review: ``update_lead`` set an email without intake's email lock.

    A rep's edit gives a lead (with a phone) the email X and has not committed
    yet; an email-only submission with X arrives meanwhile, on its own
    thread. It must wait for the edit and merge into that lead: without the
    lock it found no lead with X and made a second one.
    """
    from pelago.core.services.leads import get_lead, update_lead

    lead_id = tenant.post("/api/v1/leads", json={"name": "Li", "phone": "13800138955"}).get_json()["id"]
    email = "edit-race@example.com"
    answer: dict = {}

    def submit() -> None:
        answer["response"] = tenant.post("/api/v1/leads", json={"name": "Li", "email": email})

    def waiting_or_done(conn, thread) -> bool:
        waiting = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' "
            "AND datname = current_database()").scalar()
        return bool(waiting) or not thread.is_alive()

    with tenant.runtime.tenant_context(tenant.id) as ctx, tenant.runtime.engine.connect() as watcher:
        update_lead(ctx, get_lead(ctx, lead_id), {"email": email})  # flushed, not committed
        racer = threading.Thread(target=submit)
        racer.start()
        deadline = time.monotonic() + 30
        while not waiting_or_done(watcher, racer):  # the submission blocks on the lock (or, unlocked, finishes)
            watcher.rollback()
            assert time.monotonic() < deadline, "the submission neither finished nor waited"
    racer.join(timeout=30)
    assert not racer.is_alive()
    r = answer["response"]
    assert r.status_code in (200, 201), r.get_json()
    with tenant.runtime.sessions() as s:
        ids = s.scalars(select(Lead.id).where(Lead.tenant_id == tenant.id, Lead.email == email)).all()
    assert ids == [lead_id], f"two leads with {email}: {ids}"
