"""The claim's fast path: pools cached per process and checked by version, and its one database call.

On PostgreSQL a claim uses the tenant's pools as this process last read them
and ``pool_take`` checks, inside the same call, that the tenant's pool config
version is still the one they were read at; triggers on ``pool_pool`` and
``pool_member`` change that version on every write, whoever writes. These
tests change pools behind the cache's back (another transaction, a cascade)
and check that the next claim obeys the change. On SQLite the pools are read
in every transaction, and the same tests hold.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text

from pelago.plugin import Team
from pelago.plugins.pool.models import ConfigVersion, Pool, PoolEntry, RepDay

from .pool_helpers import add_rep, claim, default_pool, events, into_pool, ledger, owner_of, pool_tenant, set_pool


def version(t) -> int:
    with t.runtime.sessions() as s:
        return s.scalar(select(ConfigVersion.version).where(ConfigVersion.tenant_id == t.id)) or 0


def test_a_member_removed_cannot_claim_on_the_next_request(make_app):
    app = make_app()
    t = pool_tenant(app)
    other_team = t.post("/api/v1/teams", json={"name": "Beijing"}).get_json()["id"]
    outsider = add_rep(t, "outsider", team_id=other_team)
    vip = t.post("/api/v1/pool/pools", json={"name": "VIP", "members": [{"user_id": outsider, "role": "member"}]})
    vip_id = vip.get_json()["id"]
    first, second = into_pool(t, 2, pool_id=vip_id)
    assert claim(t, "outsider", first, pool_id=vip_id).status_code == 200  # the cache now holds the VIP pool
    named = {"members": [{"user_id": t.users["rep2"], "role": "member"}]}  # the outsider is no longer named
    assert t.patch(f"/api/v1/pool/pools/{vip_id}", json=named).status_code == 200
    r = claim(t, "outsider", second, pool_id=vip_id)
    assert r.status_code == 404, r.get_json()
    assert owner_of(t, second) is None


def test_settings_changed_by_another_transaction_apply_to_the_next_claim(make_app, clock):
    app = make_app()
    t = pool_tenant(app)
    first, second = into_pool(t, 2)
    assert claim(t, "rep", first).status_code == 200
    before, pool_id = version(t), default_pool(t)["id"]
    # Behind the API's back: another process edits the settings with plain SQL.
    with t.runtime.engine.begin() as conn:
        conn.execute(text("UPDATE pool_pool SET settings = :s WHERE id = :id"),
                     {"s": '{"protect_days": 3}', "id": pool_id})
    if t.runtime.engine.dialect.name == "postgresql":
        assert version(t) != before  # the trigger saw it
    r = claim(t, "rep", second)
    assert r.status_code == 409
    assert "protected until" in r.get_json()["errors"]["refused"][0]["reason"]
    assert owner_of(t, second) is None


@pytest.mark.postgres
def test_every_write_to_pools_or_members_changes_the_version(make_app):
    app = make_app()
    t = pool_tenant(app)
    seen = [version(t)]

    def changed() -> None:
        now = version(t)
        assert now not in seen, "the config version did not change"
        seen.append(now)

    team = t.post("/api/v1/teams", json={"name": "Hangzhou"}).get_json()["id"]
    pool = t.post("/api/v1/pool/pools", json={"name": "Hangzhou pool", "team_id": team}).get_json()["id"]
    changed()
    set_pool(t, pool, daily_claim_limit=5)
    changed()
    assert t.patch(f"/api/v1/pool/pools/{pool}", json={"members": [{"user_id": t.users["rep"]}]}).status_code == 200
    changed()
    with t.runtime.tenant_session(t.id) as s:  # a cascade from the core: the pool loses its team
        s.delete(s.get(Team, team))
        s.commit()
    changed()
    with t.runtime.tenant_session(t.id) as s:
        assert s.get(Pool, pool).team_id is None
    # A change rolled back leaves the version as it was, and its number is never handed out again.
    with t.runtime.engine.connect() as conn:
        conn.execute(text("UPDATE pool_pool SET name = 'x' WHERE id = :id"), {"id": pool})
        dropped = conn.execute(text("SELECT version FROM pool_config_version WHERE tenant_id = :t"),
                               {"t": t.id}).scalar()
        conn.rollback()
    assert version(t) == seen[-1]
    set_pool(t, pool, daily_claim_limit=6)
    assert version(t) not in (seen[-1], dropped)


def test_a_lost_race_says_who_won_and_writes_nothing(make_app):
    app = make_app()
    t = pool_tenant(app, daily_claim_limit=10)
    (lead,) = into_pool(t)
    assert claim(t, "rep", lead).status_code == 200
    r = claim(t, "rep2", lead)
    assert r.status_code == 409
    assert r.get_json()["errors"]["refused"] == [{"lead_id": lead, "reason": "claimed by someone else first"}]
    again = claim(t, "rep", lead)
    assert again.get_json()["errors"]["refused"] == [{"lead_id": lead, "reason": "you hold it already"}]
    with t.runtime.sessions() as s:
        counts = {r.user_id: r.claims for r in s.scalars(select(RepDay).where(RepDay.tenant_id == t.id))}
    assert counts == {t.users["rep"]: 1}  # the losers counted nothing
    assert events(t, "lead_assigned") == [[{
        "lead_id": lead, "from_user_id": None, "to_user_id": t.users["rep"], "team_id": t.team_id,
        "reason": "claimed", "rule": f"pool:{default_pool(t)['id']}", "pool_id": default_pool(t)["id"],
    }]]
    assert [c.reason for c in ledger(t, lead)] == ["created", "claimed"]


def test_the_daily_limit_refuses_a_claim_of_several_that_would_pass_it(make_app):
    app = make_app()
    t = pool_tenant(app, daily_claim_limit=2)
    leads = into_pool(t, 3)
    r = claim(t, "rep", *leads)
    assert r.status_code == 409
    assert r.get_json()["message"] == "daily claim limit reached: at most 2 claims a day; these 3 would pass it"
    assert all(owner_of(t, lead) is None for lead in leads)
    assert claim(t, "rep", *leads[:2]).status_code == 200
    assert claim(t, "rep", leads[2]).status_code == 409


def test_a_claim_from_several_pools_is_held_to_the_strictest_limit(make_app):
    app = make_app()
    t = pool_tenant(app, daily_claim_limit=5)
    strict = t.post("/api/v1/pool/pools", json={"name": "Strict", "settings": {"daily_claim_limit": 1}})
    strict_id = strict.get_json()["id"]
    (loose_lead,) = into_pool(t)
    (strict_lead,) = into_pool(t, pool_id=strict_id)
    r = claim(t, "rep", loose_lead, strict_lead)  # no pool named: each lead from its own pool
    assert r.status_code == 409
    assert r.get_json()["errors"] == {"daily_claim_limit": 1}
    assert owner_of(t, loose_lead) is None and owner_of(t, strict_lead) is None
    assert claim(t, "rep", loose_lead).status_code == 200  # alone, the default pool's 5 applies


@pytest.mark.postgres
def test_a_lead_moved_while_being_claimed_is_a_409_and_stays_moved(make_app):
    """The claim's snapshot still shows the lead in its old pool; its entry is gone from there by then."""
    app = make_app()
    t = pool_tenant(app)
    other = t.post("/api/v1/pool/pools", json={"name": "Other"}).get_json()["id"]
    (lead,) = into_pool(t)
    with t.runtime.engine.connect() as mover:
        # An admin's move, not yet committed: it holds the entry's row.
        mover.execute(text("UPDATE pool_entry SET pool_id = :p WHERE lead_id = :l"), {"p": other, "l": lead})
        result = {}
        claimer = threading.Thread(target=lambda: result.update(r=claim(t, "rep", lead)))
        claimer.start()
        waited = 0.0
        while not _waiting_for_a_lock(t) and waited < 10:  # the claim is blocked on the entry's row
            time.sleep(0.05)
            waited += 0.05
        assert waited < 10, "the claim never waited for the move"
        mover.commit()
        claimer.join(10)
    r = result["r"]
    assert r.status_code == 409
    assert "moved to another pool" in r.get_json()["message"]
    assert owner_of(t, lead) is None
    with t.runtime.sessions() as s:
        assert s.scalar(select(PoolEntry.pool_id).where(PoolEntry.lead_id == lead)) == other
    assert [c.reason for c in ledger(t, lead)] == ["created"]


def _waiting_for_a_lock(t) -> bool:
    with t.runtime.engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )).scalar())


def test_check_assign_sees_the_claimer_as_stored_and_the_claim_loads_no_user(make_app):
    """``check_assign`` is asked with the claimer's row as it is now (on PostgreSQL ``pool_take``
    returns it): a user deactivated behind the session's back is refused by the core's rule, and on
    PostgreSQL a claim after a lost race (whose rollback expired the session's objects) is one statement."""
    from sqlalchemy import event

    from pelago.plugin import Actor, Conflict, Vetoed
    from pelago.plugins.pool import service

    app = make_app()
    t = pool_tenant(app)
    first, second, third = into_pool(t, 3)
    pool_id = default_pool(t)["id"]
    runtime = t.runtime
    me = Actor(user_id=t.users["rep"], role="rep", tenant_id=t.id, team_id=t.team_id)
    rival = Actor(user_id=t.users["rep2"], role="rep", tenant_id=t.id, team_id=t.team_id)
    with runtime.tenant_context(t.id, rival) as ctx:
        service.claim(ctx, [first], pool_id)
    statements: list[str] = []

    def seen(conn, cursor, sql, params, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(sql)

    with runtime.tenant_context(t.id, me) as ctx:
        with pytest.raises(Conflict):
            service.claim(ctx, [first], pool_id)  # lost: the rival holds it
        ctx.session.rollback()
        event.listen(runtime.engine, "before_cursor_execute", seen)
        try:
            assert service.claim(ctx, [second], pool_id).done == [second]
        finally:
            event.remove(runtime.engine, "before_cursor_execute", seen)
    if runtime.engine.dialect.name == "postgresql":
        assert len(statements) == 1 and "pool_take" in statements[0], statements
    assert owner_of(t, second) == t.users["rep"]
    with runtime.engine.begin() as conn:
        conn.execute(text("UPDATE core_user SET active = false WHERE id = :u"), {"u": t.users["rep"]})
    with runtime.tenant_context(t.id, me) as ctx:
        with pytest.raises(Vetoed, match="is not active"):
            service.claim(ctx, [third], pool_id)
        ctx.session.rollback()
    assert owner_of(t, third) is None
