"""The sweep: exactly the leads each rule selects go back, reminders go once, twice is once, dry is dry.

The clock starts at 10:00 Shanghai on Monday 2 March 2026; leads created then
by a rep are hers from that moment (``assigned_at``). Days are calendar days
in Shanghai: with a 7-day rule such a lead is due at 00:00 on 9 March.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from pelago.plugin import Lead, PluginSpec, Submission, hookimpl, ingest
from pelago.plugins.pool import sweep as sweeping
from pelago.plugins.pool.models import PoolEntry, Reminder, Sweep
from pelago.testing import scheduler_tick

from .pool_helpers import claim, count, default_pool, events, ledger, owner_of, phone, pool_tenant, set_pool

SH = ZoneInfo("Asia/Shanghai")


def at(clock, m, d, hh=0, mm=0):
    clock.at = datetime(2026, m, d, hh, mm, tzinfo=SH).astimezone(timezone.utc)


def run(t, **kw):
    with t.runtime.tenant_context(t.id) as ctx:
        return sweeping.run(ctx, trigger="test", **kw)


def mine(t, who="rep", n=1, **fields):
    return [t.lead(phone(), who=who, **fields)["id"] for _ in range(n)]


def preview_ids(t):
    return {i["lead_id"]: i["rule"] for i in t.get("/api/v1/pool/sweep/preview?limit=200").get_json()["items"]}


def counts(t):
    """What a sweep could write, for the tenant: to prove a dry run wrote nothing."""
    with t.runtime.sessions() as s:
        def n(model):
            return s.scalar(select(func.count()).select_from(model).where(model.tenant_id == t.id))
        versions = s.scalar(select(func.sum(Lead.version)).where(Lead.tenant_id == t.id))
        mine = (n(PoolEntry), n(Reminder), n(Sweep))
    return (count(t, "core_ownership_change"), *mine, count(t, "core_event"), versions)


# --- each rule selects exactly its leads ------------------------------------------------------


def test_no_follow_up_counts_from_the_later_of_activity_and_claim(make_app, clock):
    app = make_app()
    t = pool_tenant(app, recycle={"no_followup": {"days": 7}})
    quiet, called, won, locked = mine(t, n=4)
    (in_pool,) = [t.post(f"/api/v1/pool/pools/{default_pool(t)['id']}/leads", json={"phone": phone()}).get_json()["id"]]
    t.post(f"/api/v1/leads/{won}/stage", "rep", json={"stage": "won"})
    t.patch(f"/api/v1/leads/{locked}", "manager", json={"locked": True})
    at(clock, 3, 5, 9)
    t.post(f"/api/v1/leads/{called}/activities", "rep", json={"kind": "call"})
    claim(t, "rep2", in_pool)  # claimed on 5 March: counts from then
    at(clock, 3, 8, 23, 59)
    assert preview_ids(t) == {}
    assert run(t).released == 0
    at(clock, 3, 9)  # 7 calendar days after 2 March
    assert preview_ids(t) == {quiet: "no_followup"}
    report = run(t)
    assert (report.released, report.by_rule) == (1, {"no_followup": 1})
    assert owner_of(t, quiet) is None
    assert {owner_of(t, x) for x in (called, won, locked)} == {t.users["rep"]}
    at(clock, 3, 12)
    assert run(t).released == 2  # the call on 5 March, and the claim on 5 March
    assert owner_of(t, called) is None and owner_of(t, in_pool) is None
    at(clock, 6, 1)
    assert run(t).released == 0  # won and locked: never
    assert owner_of(t, won) == owner_of(t, locked) == t.users["rep"]


def test_not_won_within_days_of_the_claim(make_app, clock):
    app = make_app()
    t = pool_tenant(app, recycle={"not_won": {"days": 30}})
    busy, idle, won = mine(t, n=3)
    at(clock, 3, 20)
    t.post(f"/api/v1/leads/{busy}/activities", "rep", json={"kind": "visit"})
    t.post(f"/api/v1/leads/{busy}/stage", "rep", json={"stage": "qualified"})
    t.post(f"/api/v1/leads/{won}/stage", "rep", json={"stage": "won"})
    at(clock, 3, 31, 23)
    assert run(t).released == 0
    at(clock, 4, 1)  # 30 days after 2 March, worked or not
    assert preview_ids(t) == {busy: "not_won", idle: "not_won"}
    assert run(t).released == 2 and owner_of(t, won) == t.users["rep"]


def test_stage_not_advanced(make_app, clock):
    app = make_app()
    t = pool_tenant(app, recycle={"stage_stale": {"days": 10}})
    stuck, moved = mine(t, n=2)
    at(clock, 3, 8)
    t.post(f"/api/v1/leads/{stuck}/activities", "rep", json={"kind": "call"})  # activity is not a stage move
    t.post(f"/api/v1/leads/{moved}/stage", "rep", json={"stage": "contacted"})
    at(clock, 3, 12)
    assert preview_ids(t) == {stuck: "stage_stale"}
    assert run(t).released == 1 and owner_of(t, moved) == t.users["rep"]
    at(clock, 3, 18)
    assert run(t).released == 1 and owner_of(t, moved) is None


def test_per_source_and_per_level_days(make_app, clock):
    app = make_app()
    t = pool_tenant(app, recycle={"no_followup": {"days": None, "by_source": {"ads": 3, "referral": 14},
                                                  "by_level": {"A": 30, "C": 2, "VIP": None}}})
    plain = mine(t)[0]
    ads = mine(t, source="ads")[0]
    referral = mine(t, source="referral")[0]
    ads_vip = mine(t, source="ads", attributes={"level": "VIP"})[0]  # the level wins: exempt
    level_c = mine(t, attributes={"level": "C"})[0]
    level_a_ads = mine(t, source="ads", attributes={"level": "A"})[0]
    at(clock, 3, 4)
    assert preview_ids(t) == {level_c: "no_followup"}
    at(clock, 3, 5)
    assert preview_ids(t) == {level_c: "no_followup", ads: "no_followup"}
    at(clock, 3, 16)
    assert set(preview_ids(t)) == {level_c, ads, referral}
    at(clock, 4, 1)
    assert set(preview_ids(t)) == {level_c, ads, referral, level_a_ads}
    assert run(t).released == 4
    assert owner_of(t, plain) == owner_of(t, ads_vip) == t.users["rep"]


def test_rules_combine_and_the_first_due_names_the_release(make_app, clock):
    app = make_app()
    t = pool_tenant(app, recycle={"no_followup": {"days": 7}, "not_won": {"days": 5}})
    (lead,) = mine(t)
    at(clock, 3, 7)
    report = run(t)
    assert report.by_rule == {"not_won": 1}
    last = ledger(t, lead)[-1]
    assert (last.reason, last.rule, last.from_user_id, last.actor_id) == ("recycled", "not_won", t.users["rep"], None)
    assert events(t, "lead_released")[-1] == [{"lead_id": lead, "from_user_id": t.users["rep"], "reason": "recycled",
                                               "rule": "not_won", "pool_id": default_pool(t)["id"]}]


def test_each_team_by_its_pool_the_rest_by_the_default(make_app, clock):
    app = make_app()
    t = pool_tenant(app, recycle={"no_followup": {"days": 30}})
    team_pool = t.post("/api/v1/pool/pools", json={"name": "Sales", "team_id": t.team_id}).get_json()
    set_pool(t, team_pool["id"], recycle={"no_followup": {"days": 3}})
    teamless = t.post("/api/v1/users", json={"email": f"{uuid.uuid4().hex[:6]}@x.test", "role": "rep"}).get_json()
    ours = mine(t)[0]  # the rep's team is t.team_id
    theirs = t.post("/api/v1/leads", json={"phone": phone(), "owner_id": teamless["id"]}).get_json()["id"]
    at(clock, 3, 5)
    assert preview_ids(t) == {ours: "no_followup"}
    run(t)
    listed = t.get(f"/api/v1/pool/pools/{team_pool['id']}/leads").get_json()["items"]
    assert [(x["id"], x["reason"], x["rule"], x["from_user_id"]) for x in listed] == [
        (ours, "recycled", "no_followup", t.users["rep"])]
    at(clock, 4, 1)
    run(t)
    assert [x["id"] for x in t.get(f"/api/v1/pool/pools/{default_pool(t)['id']}/leads").get_json()["items"]] == [theirs]


# --- python and SQL agree -----------------------------------------------------------------------


def test_remaining_days_and_the_sweep_agree(make_app, clock):
    """Random leads, random touches, times around midnight: the SQL rules (preview) select exactly
    the leads whose Python due date (holdings) has come."""
    rnd = random.Random(4)
    app = make_app()
    t = pool_tenant(app, recycle={"no_followup": {"days": 5, "by_source": {"ads": 2}},
                                  "not_won": {"days": 12, "by_level": {"A": 20, "B": None}},
                                  "stage_stale": {"days": 8}})
    leads = []
    for _ in range(24):
        at(clock, 3, 2 + rnd.randint(0, 5), rnd.randint(0, 23), rnd.randint(0, 59))
        fields = {"source": rnd.choice([None, "ads", "fair"])}
        if rnd.random() < 0.5:
            fields["attributes"] = {"level": rnd.choice(["A", "B", "C"])}
        leads.append(mine(t, **fields)[0])
    for lead in leads:
        at(clock, 3, 8 + rnd.randint(0, 4), rnd.randint(0, 23), rnd.randint(0, 59))
        if rnd.random() < 0.5:
            t.post(f"/api/v1/leads/{lead}/activities", "rep", json={"kind": "call"})
        if rnd.random() < 0.3:
            t.post(f"/api/v1/leads/{lead}/stage", "rep", json={"stage": "contacted"})
    checked = 0
    for day, hh, mm in ((13, 23, 59), (14, 0, 0), (15, 12, 0), (17, 0, 0), (20, 23, 59), (25, 0, 0), (31, 0, 0)):
        at(clock, 3, day, hh, mm)
        holdings = t.get("/api/v1/pool/holdings?limit=200", "rep").get_json()["items"]
        due_now = {h["lead_id"]: h["rule"] for h in holdings if h["due_at"] is not None
                   and datetime.fromisoformat(h["due_at"]) <= clock()}
        assert all(h["remaining_days"] == 0 for h in holdings if h["lead_id"] in due_now)
        assert set(preview_ids(t)) == set(due_now), (day, hh, mm)
        checked += len(due_now)
    assert checked > 10  # the rules did select leads along the way


# --- reminders, idempotency, dry runs -----------------------------------------------------------


def test_reminders_go_once_per_due_date(make_app, clock):
    app = make_app()
    t = pool_tenant(app, recycle={"no_followup": {"days": 7}}, remind_days_before=2)
    a, b = mine(t, n=2)
    at(clock, 3, 6, 23, 59)
    assert run(t).reminded == 0
    at(clock, 3, 7)  # due 9 March, two days ahead
    assert (run(t).reminded, run(t).reminded) == (2, 0)
    at(clock, 3, 8, 9)
    assert run(t).reminded == 0
    assert [[(i["lead_id"], i["owner_id"], i["rule"], i["due_at"], i["days_left"]) for i in e]
            for e in events(t, "pool_recycle_due")] == [[
                (a, t.users["rep"], "no_followup", "2026-03-08T16:00:00+00:00", 2),
                (b, t.users["rep"], "no_followup", "2026-03-08T16:00:00+00:00", 2)]]
    t.post(f"/api/v1/leads/{a}/activities", "rep", json={"kind": "call"})  # due moves to 15 March
    at(clock, 3, 9)
    report = run(t)
    assert (report.released, report.reminded) == (1, 0) and owner_of(t, a) == t.users["rep"]
    at(clock, 3, 13)
    assert run(t).reminded == 1  # a new due date: a new reminder
    assert events(t, "pool_recycle_due")[-1][0]["due_at"] == "2026-03-14T16:00:00+00:00"


def test_a_second_sweep_moves_nothing(make_app, clock):
    app = make_app()
    t = pool_tenant(app, recycle={"no_followup": {"days": 1}}, remind_days_before=1)
    stale = mine(t, n=3)
    at(clock, 3, 3)
    first = run(t)
    assert first.released == 3
    after_first = counts(t)
    second = run(t)
    assert (second.released, second.reminded, second.vetoed) == (0, 0, 0)
    assert counts(t)[:3] == after_first[:3] and counts(t)[5] == after_first[5]  # no lead, ledger, entry touched
    assert all(len([x for x in ledger(t, lead) if x.reason == "recycled"]) == 1 for lead in stale)
    history = t.get("/api/v1/pool/sweeps").get_json()["items"]
    assert [(h["released"], h["trigger"], h["state"]) for h in history[:2]] == [(0, "test", "done"), (3, "test", "done")]


def test_a_dry_run_writes_nothing(make_app, clock):
    app = make_app()
    t = pool_tenant(app, recycle={"no_followup": {"days": 2}}, remind_days_before=3)
    stale = mine(t, n=2)
    at(clock, 3, 4)
    fresh = mine(t)[0]  # due 6 March: inside the reminder window
    before = counts(t)
    report = run(t, dry_run=True, keep=True)
    assert (report.released, report.reminded, report.sweep_id) == (2, 1, None)
    assert sorted(m["lead_id"] for m in report.moves) == sorted(stale)
    assert counts(t) == before
    assert {owner_of(t, x) for x in (*stale, fresh)} == {t.users["rep"]}
    assert t.get("/api/v1/pool/sweeps").get_json()["items"] == []


# --- batches, vetoes ------------------------------------------------------------------------------


def _bulk(t, n, owner):
    with t.runtime.tenant_context(t.id) as ctx:
        out = ingest(ctx, [Submission({"name": f"bulk {i}", "phone": phone(), "owner_id": owner}) for i in range(n)])
    return [o.lead_id for o in out]


def test_batches_are_bounded_transactions_with_one_event_each(make_app, clock):
    app = make_app()
    t = pool_tenant(app, recycle={"no_followup": {"days": 3}})
    stale = _bulk(t, 250, t.users["rep"])
    at(clock, 3, 4)
    fresh = _bulk(t, 30, t.users["rep2"])
    at(clock, 3, 5)
    report = run(t, batch=100)
    assert report.released == 250 and report.scanned == 280 and report.batches >= 3
    sizes = [len(e) for e in events(t, "lead_released")]
    assert sizes == [100, 100, 50]
    assert count(t, "core_ownership_change", "reason = 'recycled'") == 250
    with t.runtime.tenant_session(t.id) as s:
        assert s.scalar(select(func.count()).select_from(PoolEntry)) == 250
        owned = set(s.scalars(select(Lead.id).where(Lead.owner_id.is_not(None))))
    assert owned == set(fresh) and not owned & set(stale)


class _Keeper:
    """A test plugin that refuses to let leads named "keep…" go."""

    @hookimpl
    def check_assign(self, ctx, assignments):
        return {i: "kept by contract" for i, a in enumerate(assignments)
                if a.user is None and a.lead.name.startswith("keep")} or None


def test_a_plugin_may_veto_a_recycle(make_app, clock):
    app = make_app(("keeper", "pool"), extra=[PluginSpec(name="keeper", title="Keeper", hooks=_Keeper())])
    t = pool_tenant(app, recycle={"no_followup": {"days": 1}})
    t.put("/api/v1/plugins/keeper", json={"enabled": True})
    kept = t.lead(phone(), who="rep", name="keep me")["id"]
    gone = t.lead(phone(), who="rep", name="let me go")["id"]
    at(clock, 3, 3)
    report = run(t)
    assert (report.released, report.vetoed) == (1, 1)
    assert owner_of(t, kept) == t.users["rep"] and owner_of(t, gone) is None
    r = t.post("/api/v1/pool/release", "rep", json={"lead_ids": [kept], "reason": "x"})
    assert r.status_code == 409 and "kept by contract (refused by keeper)" in r.get_json()["message"]


# --- how it runs -------------------------------------------------------------------------------------


def test_the_scheduler_sweeps_only_tenants_with_the_pool_on(make_app, clock):
    app = make_app()
    on = pool_tenant(app, recycle={"no_followup": {"days": 1}})
    off = pool_tenant(app, recycle={"no_followup": {"days": 1}})
    off.put("/api/v1/plugins/pool", json={"enabled": False})
    a = mine(on)[0]
    b = mine(off)[0]
    at(clock, 3, 3)
    started = [s for s in scheduler_tick(on.runtime) if s[0] in (on.id, off.id)]
    assert started == [(on.id, "pool.sweep")]
    assert owner_of(on, a) is None and owner_of(off, b) == off.users["rep"]
    assert on.get("/api/v1/pool/sweeps").get_json()["items"][0]["trigger"] == "periodic"
    assert scheduler_tick(on.runtime, on.id) == []  # same period


def test_the_command_line_sweeps_with_a_progress_bar(make_app, clock, pelago_cli):
    app = make_app()
    t = pool_tenant(app, recycle={"no_followup": {"days": 7}})
    off = pool_tenant(app)
    off.put("/api/v1/plugins/pool", json={"enabled": False})
    stale = mine(t, n=2)
    at(clock, 3, 10)  # the command gets the app's runtime, and its clock: a week on, they are unworked

    def cli(*args: str):
        return pelago_cli(*args, app=app)
    r = cli("pool", "sweep", "--tenant", t.slug, "--dry-run")
    assert r.exit_code == 0, r.output
    assert f"{t.slug}: would recycle 2 (no_followup 2)" in r.output and "sweeping" in r.output
    assert {owner_of(t, x) for x in stale} == {t.users["rep"]}
    r = cli("pool", "sweep", "--tenant", t.slug)
    assert r.exit_code == 0 and f"{t.slug}: recycled 2 (no_followup 2)" in r.output
    assert {owner_of(t, x) for x in stale} == {None}
    r = cli("pool", "sweep", "--tenant", off.slug)
    assert r.exit_code == 0 and "skipped, the pool is off" in r.output
    r = cli("pool", "sweep", "--tenant", "no-such-tenant")
    assert r.exit_code != 0 and "no tenant" in r.output
    r = cli("pool", "sweep", "--batch", "5")
    assert r.exit_code != 0  # 100..5000


@pytest.mark.postgres
def test_the_sweep_leaves_a_lead_being_changed_to_the_next_run(make_app, clock):
    """A row locked by a user's open transaction is skipped (PostgreSQL: SKIP LOCKED), not waited for."""
    app = make_app()
    t = pool_tenant(app, recycle={"no_followup": {"days": 1}})
    busy, free = mine(t, n=2)
    at(clock, 3, 3)
    blocker = t.runtime.tenant_session(t.id)
    blocker.execute(select(Lead.id).where(Lead.id == busy).with_for_update())
    try:
        assert run(t).released == 1
    finally:
        blocker.rollback()
        blocker.close()
    assert owner_of(t, free) is None and owner_of(t, busy) == t.users["rep"]
    assert run(t).released == 1


def test_history_is_per_tenant_and_for_managers(make_app, clock):
    app = make_app()
    a, b = pool_tenant(app), pool_tenant(app)
    run(a)
    assert len(a.get("/api/v1/pool/sweeps").get_json()["items"]) == 1
    assert b.get("/api/v1/pool/sweeps").get_json()["items"] == []
    assert a.get("/api/v1/pool/sweeps", "rep").status_code == 403
    assert a.get("/api/v1/pool/sweep/preview", "rep").status_code == 403

