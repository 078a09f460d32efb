"""The pool's claims under real concurrency: real threads, real PostgreSQL.

Every request below runs on its own connection and transaction, started
together behind a barrier; the assertions read the database afterwards.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from sqlalchemy import func, select

from pelago.plugin import Lead
from pelago.plugins.pool import sweep as sweeping
from pelago.plugins.pool.models import PoolEntry, RepDay
from tests.test_concurrency import run_parallel

from .pool_helpers import add_rep, claim, core_rows, default_pool, into_pool, phone, pool_tenant

pytestmark = pytest.mark.postgres


def claimed_rows(t):
    return [tuple(r) for r in core_rows(
        t, "SELECT lead_id, to_user_id FROM core_ownership_change WHERE tenant_id = :t AND reason = 'claimed'")]


def test_32_threads_50_leads_daily_limit_3_hold_cap_5(make_app):
    app = make_app()
    t = pool_tenant(app, daily_claim_limit=3, hold_cap=5)
    reps = [f"r{i}" for i in range(8)]
    for who in reps:
        add_rep(t, who)
    for who in reps[:4]:  # these hold 3 leads already: the cap leaves them 2 claims
        for _ in range(3):
            t.lead(phone(), who=who)
    leads = into_pool(t, 50)

    def worker(i):
        who = reps[i % 8]
        rnd = random.Random(i)
        out = []
        for _ in range(8):
            ids = rnd.sample(leads, 2 if rnd.random() < 0.3 else 1)
            r = claim(t, who, *ids)
            out.append((who, r.status_code, r.get_json()))
        return out

    results = [x for chunk in run_parallel(32, worker) for x in chunk]
    assert {code for _, code, _ in results} <= {200, 409}, Counter(code for _, code, _ in results)
    losers = [body for _, code, body in results if code == 409]
    assert losers and all(body["message"] for body in losers)
    assert any("claimed by someone else first" in b["message"] for b in losers)  # real races happened
    assert any("daily claim limit" in b["message"] for b in losers)
    assert any("hold cap" in b["message"] for b in losers)

    rows = claimed_rows(t)
    per_lead = Counter(lead for lead, _ in rows)
    assert max(per_lead.values()) == 1  # no lead was claimed twice
    won = Counter()
    for who, code, body in results:
        if code == 200:
            for lead in body["done"]:
                won[lead] += 1
                assert (lead, t.users[who]) in rows  # each successful claim: exactly its ledger row
    assert sum(won.values()) == len(rows) and set(won) == set(per_lead)
    with t.runtime.tenant_session(t.id) as s:
        owners = dict(s.execute(select(Lead.id, Lead.owner_id).where(Lead.id.in_(leads))).all())
        entries = set(s.scalars(select(PoolEntry.lead_id)))
        counted = dict(s.execute(select(RepDay.user_id, RepDay.claims)).all())
        holding = dict(s.execute(select(Lead.owner_id, func.count()).where(Lead.owner_id.is_not(None))
                                 .group_by(Lead.owner_id)).all())
    for lead, user_id in rows:
        assert owners[lead] == user_id and lead not in entries
    assert {lead for lead, owner in owners.items() if owner is None} == entries  # the rest are still in the pool
    by_rep = Counter(user_id for _, user_id in rows)
    for who in reps:
        uid = t.users[who]
        assert by_rep[uid] == counted.get(uid, 0) <= 3
        assert holding.get(uid, 0) <= 5
    # Everyone reached their limit: the cap for the first four (3 held + 2), the daily limit for the others.
    assert [by_rep[t.users[w]] for w in reps] == [2, 2, 2, 2, 3, 3, 3, 3]


def test_16_claimers_of_one_lead_one_winner(make_app):
    app = make_app()
    t = pool_tenant(app)
    reps = [f"c{i}" for i in range(16)]
    for who in reps:
        add_rep(t, who)
    (lead,) = into_pool(t)
    responses = run_parallel(16, lambda i: claim(t, reps[i], lead))
    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 409: 15}, codes
    winner = next(reps[i] for i, r in enumerate(responses) if r.status_code == 200)
    assert all(r.get_json()["errors"]["refused"] == [{"lead_id": lead, "reason": "claimed by someone else first"}]
               for r in responses if r.status_code == 409)
    assert claimed_rows(t) == [(lead, t.users[winner])]


def test_distribution_and_claims_racing_for_one_reps_cap(make_app):
    app = make_app()
    t = pool_tenant(app, hold_cap=2)
    leads = into_pool(t, 16)

    def go(i):
        if i % 2:
            return claim(t, "rep", leads[i])
        return t.post("/api/v1/pool/distribute", "manager", json={"lead_ids": [leads[i]], "user_id": t.users["rep"]})

    codes = Counter(r.status_code for r in run_parallel(16, go))
    assert codes == {200: 2, 409: 14}, codes
    with t.runtime.tenant_session(t.id) as s:
        assert s.scalar(select(func.count()).select_from(Lead).where(Lead.owner_id == t.users["rep"])) == 2


def test_claims_racing_moves_leave_each_lead_owned_or_in_exactly_one_pool(make_app):
    app = make_app()
    t = pool_tenant(app)
    vip = t.post("/api/v1/pool/pools", json={"name": "VIP"}).get_json()["id"]
    home = default_pool(t)["id"]
    leads = into_pool(t, 8)
    for i in range(8):
        add_rep(t, f"m{i}")

    def go(i):
        lead = leads[i % 8]
        if i < 8:
            return claim(t, f"m{i}", lead, pool_id=home)
        return t.post("/api/v1/pool/move", "manager", json={"lead_ids": [lead], "pool_id": vip})

    responses = run_parallel(16, go)
    assert {r.status_code for r in responses} <= {200, 409}, [r.get_json() for r in responses]
    with t.runtime.tenant_session(t.id) as s:
        owners = dict(s.execute(select(Lead.id, Lead.owner_id).where(Lead.id.in_(leads))).all())
        entries = dict(s.execute(select(PoolEntry.lead_id, PoolEntry.pool_id)).all())
    for lead in leads:
        assert (owners[lead] is None) == (lead in entries), lead
    claimed = {lead for lead, _ in claimed_rows(t)}
    assert claimed == {lead for lead, owner in owners.items() if owner is not None}
    assert all(entries[lead] == vip for lead in leads if lead not in claimed)


def test_two_sweeps_at_once_release_each_lead_once(make_app, clock):

    from pelago.plugin import Submission, ingest

    app = make_app()
    t = pool_tenant(app, recycle={"no_followup": {"days": 1}})
    with t.runtime.tenant_context(t.id) as ctx:
        ingest(ctx, [Submission({"phone": phone(), "owner_id": t.users["rep"]}) for _ in range(600)])
    clock.advance(days=2)

    def go(_):
        with t.runtime.tenant_context(t.id) as ctx:
            return sweeping.run(ctx, trigger="test", batch=100).released

    released = run_parallel(2, go)
    assert sum(released) == 600
    per_lead = Counter(r.lead_id for r in core_rows(
        t, "SELECT lead_id FROM core_ownership_change WHERE tenant_id = :t AND reason = 'recycled'"))
    assert len(per_lead) == 600 and set(per_lead.values()) == {1}
