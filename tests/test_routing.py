"""Routing: rules, strategies, capacity, leave, hours, hand-off, preview and the ledger's why."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from pelago.core.models import Lead, OwnershipChange, Team, User

from .conftest import TenantHandle


def add_team(t: TenantHandle, name: str, strategy: str = "round_robin", reps: int = 3, **user_fields) -> tuple[int, list[int]]:
    r = t.post("/api/v1/teams", json={"name": name, "strategy": strategy})
    assert r.status_code == 201, r.get_json()
    team_id = r.get_json()["id"]
    return team_id, [add_rep(t, team_id, f"{name}-{k}", **user_fields) for k in range(reps)]


def add_rep(t: TenantHandle, team_id: int, name: str, **fields) -> int:
    r = t.post("/api/v1/users", json={"email": f"{name}@{t.slug}.test".lower(), "role": "rep", "team_id": team_id})
    assert r.status_code == 201, r.get_json()
    uid = r.get_json()["id"]
    if fields:
        assert t.patch(f"/api/v1/users/{uid}", json=fields).status_code == 200
    return uid


def routing_on(t: TenantHandle, team_id: int | None = None) -> None:
    r = t.patch("/api/v1/routing/settings", json={"auto_routing": True, "default_team_id": team_id})
    assert r.status_code == 200, r.get_json()


def ledger(t: TenantHandle, lead_id: int) -> dict:
    items = t.get(f"/api/v1/leads/{lead_id}/history").get_json()["items"]
    return [h for h in items if h["type"] == "ownership"][-1]


def phone(n: int) -> str:
    return f"1390000{n:04d}"


# --- strategies --------------------------------------------------------------------


def test_round_robin_30_leads_over_3_reps_gives_10_each(tenant):
    team, reps = add_team(tenant, "RR")
    routing_on(tenant, team)
    owners = [tenant.lead(phone(i))["owner_id"] for i in range(30)]
    assert Counter(owners) == {r: 10 for r in reps}
    assert owners[:6] == reps + reps  # in id order, cycling
    assert tenant.get(f"/api/v1/teams/{team}").get_json()["rr_pointer"] == owners[-1]


def test_round_robin_adding_a_rep_midway_shifts_nobody(tenant):
    team, reps = add_team(tenant, "RR2")
    routing_on(tenant, team)
    first = [tenant.lead(phone(100 + i))["owner_id"] for i in range(4)]
    assert first == [reps[0], reps[1], reps[2], reps[0]]
    newcomer = add_rep(tenant, team, "RR2-new")
    nxt = [tenant.lead(phone(200 + i))["owner_id"] for i in range(4)]
    # the pointer is the last assigned id: the cycle goes on after reps[0], the newcomer in id order
    assert nxt == [reps[1], reps[2], newcomer, reps[0]]


def test_load_balanced_gives_to_the_fewest_open_leads(tenant):
    team, reps = add_team(tenant, "LB", "load_balanced")
    for i in range(4):  # reps[0] already holds 4 open leads
        tenant.lead(phone(300 + i), owner_id=reps[0])
    routing_on(tenant, team)
    owners = [tenant.lead(phone(310 + i))["owner_id"] for i in range(8)]
    counts = Counter(owners)
    assert counts[reps[0]] == 0 and counts[reps[1]] == 4 and counts[reps[2]] == 4
    assert "fewest open leads" in ledger(tenant, tenant.lead(phone(330))["id"])["detail"]["owner"]["reason"]


def test_load_balanced_ignores_closed_leads(tenant):
    team, reps = add_team(tenant, "LB2", "load_balanced", reps=2)
    won = tenant.lead(phone(340), owner_id=reps[0])
    assert tenant.post(f"/api/v1/leads/{won['id']}/stage", json={"stage": "won"}).status_code == 200
    routing_on(tenant, team)
    assert tenant.lead(phone(341))["owner_id"] == reps[0]  # 0 open each: the lower id


def test_weighted_shares_follow_weights(tenant):
    team, reps = add_team(tenant, "W", "weighted", reps=2)
    tenant.patch(f"/api/v1/users/{reps[0]}", json={"weight": 3})
    routing_on(tenant, team)
    owners = [tenant.lead(phone(400 + i))["owner_id"] for i in range(40)]
    assert Counter(owners) == {reps[0]: 30, reps[1]: 10}
    # smooth, not in blocks: never more than 3 in a row for the heavy rep
    runs = "".join("a" if o == reps[0] else "b" for o in owners)
    assert "aaaa" not in runs and "bb" not in runs


# --- candidates ----------------------------------------------------------------------


def test_daily_capacity_skips_full_reps_then_leaves_unowned(tenant):
    team, reps = add_team(tenant, "Cap", reps=2, daily_capacity=2)
    routing_on(tenant, team)
    owners = [tenant.lead(phone(500 + i))["owner_id"] for i in range(5)]
    assert Counter(owners) == {reps[0]: 2, reps[1]: 2, None: 1}
    why = ledger(tenant, tenant.lead(phone(510))["id"])
    assert why["to_user_id"] is None and "daily capacity" in why["detail"]["owner"]["reason"]


def test_daily_capacity_resets_at_midnight_in_the_tenant_timezone(tenant, clock):
    clock.at = datetime(2026, 3, 1, 15, 50, tzinfo=timezone.utc)  # 23:50 in Shanghai
    t = tenant
    team, reps = add_team(t, "Cap2", reps=1, daily_capacity=1)
    routing_on(t, team)
    assert t.lead(phone(520))["owner_id"] == reps[0]
    assert t.lead(phone(521))["owner_id"] is None
    clock.advance(minutes=15)  # 00:05 the next day in Shanghai, still 1 March in UTC
    assert t.lead(phone(522))["owner_id"] == reps[0]


def test_leave_and_working_hours_exclude_with_reasons(tenant, clock):
    clock.at = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)  # Monday 20:00 in Shanghai
    t = tenant
    team, reps = add_team(t, "Hours", reps=3)
    t.patch(f"/api/v1/users/{reps[0]}", json={"on_leave": True})
    t.patch(f"/api/v1/users/{reps[1]}", json={"working_hours": {"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "18:00"}})
    t.patch(f"/api/v1/users/{reps[2]}", json={"working_hours": {"start": "18:00", "end": "02:00"}})
    routing_on(t, team)
    lead = t.lead(phone(600))
    assert lead["owner_id"] == reps[2]  # the night shift
    why = ledger(t, lead["id"])["detail"]
    assert why["excluded"] == {str(reps[0]): "on leave", str(reps[1]): "outside working hours"}
    assert sorted(why["candidates"]) == sorted(reps)
    clock.advance(hours=14)  # Tuesday 10:00
    assert t.lead(phone(601))["owner_id"] == reps[1]


def test_no_candidate_leaves_the_lead_unowned_with_the_reason(tenant):
    team, reps = add_team(tenant, "Empty", reps=1)
    tenant.patch(f"/api/v1/users/{reps[0]}", json={"on_leave": True})
    routing_on(tenant, team)
    lead = tenant.lead(phone(700))
    assert lead["owner_id"] is None and lead["team_id"] == team
    why = ledger(tenant, lead["id"])
    assert why["detail"]["owner"]["reason"] == "no eligible candidate in the team"


# --- rules -----------------------------------------------------------------------------


def test_rules_choose_the_team_by_channel_source_region_product(tenant):
    ads, _ = add_team(tenant, "Ads", reps=1)
    north, _ = add_team(tenant, "North", reps=1)
    fallback, _ = add_team(tenant, "Fallback", reps=1)
    routing_on(tenant, fallback)
    r = tenant.post("/api/v1/routing/rules", json={
        "name": "north courses", "priority": 10, "team_id": north,
        "match": {"region": ["Beijing", "Tianjin"], "product": ["math"]},
    })
    assert r.status_code == 201, r.get_json()
    tenant.post("/api/v1/routing/rules", json={"name": "douyin", "priority": 20, "team_id": ads,
                                               "match": {"source": ["douyin"]}})
    a = tenant.lead(phone(800), region="Beijing", product="math", source="douyin")
    b = tenant.lead(phone(801), region="Beijing", product="english", source="douyin")
    c = tenant.lead(phone(802), region="Shanghai")
    assert (a["team_id"], b["team_id"], c["team_id"]) == (north, ads, fallback)
    assert ledger(tenant, a["id"])["detail"]["team"]["rule"] == "rule:north courses"
    assert ledger(tenant, c["id"])["detail"]["team"]["rule"] == "default_team"
    rules = tenant.get("/api/v1/routing/rules").get_json()["items"]
    assert [x["name"] for x in rules] == ["north courses", "douyin"]


def test_auto_routing_off_leaves_leads_unrouted(tenant):
    team, _ = add_team(tenant, "Off", reps=1)
    tenant.patch("/api/v1/routing/settings", json={"auto_routing": False, "default_team_id": team})
    lead = tenant.lead(phone(900))
    assert lead["owner_id"] is None and lead["team_id"] is None


def test_rule_and_settings_input_is_checked(tenant, other_tenant):
    foreign = other_tenant.team_id
    bad = [
        {"name": "x", "team_id": foreign},
        {"name": "x", "team_id": tenant.team_id, "match": {"colour": ["red"]}},
        {"name": "x", "team_id": tenant.team_id, "match": {"source": []}},
        {"name": "", "team_id": tenant.team_id},
        {"name": "x", "team_id": tenant.team_id, "priority": -1},
    ]
    for body in bad:
        r = tenant.post("/api/v1/routing/rules", json=body)
        assert r.status_code == 422, (body, r.get_json())
    assert tenant.get("/api/v1/routing/rules").get_json()["items"] == []
    r = tenant.patch("/api/v1/routing/settings", json={"default_team_id": foreign})
    assert r.status_code == 422 and "default_team_id" in str(r.get_json())
    r = tenant.patch("/api/v1/routing/settings", json={"handoff_enabled": True})
    assert r.status_code == 422 and "repurchase_team_id" in str(r.get_json())
    ok = tenant.post("/api/v1/routing/rules", json={"name": "x", "team_id": tenant.team_id})
    assert ok.status_code == 201
    assert tenant.post("/api/v1/routing/rules", json={"name": "x", "team_id": tenant.team_id}).status_code == 409
    rule_id = ok.get_json()["id"]
    assert other_tenant.get(f"/api/v1/routing/rules/{rule_id}").status_code == 404
    assert other_tenant.patch(f"/api/v1/routing/rules/{rule_id}", json={"priority": 1}).status_code == 404
    assert tenant.patch(f"/api/v1/routing/rules/{rule_id}", "rep", json={"priority": 1}).status_code == 403
    assert tenant.call("DELETE", f"/api/v1/routing/rules/{rule_id}").status_code == 204
    assert tenant.get(f"/api/v1/routing/rules/{rule_id}").status_code == 404


# --- preview --------------------------------------------------------------------------


def test_preview_explains_like_intake_and_writes_nothing(tenant):
    team, reps = add_team(tenant, "Prev", reps=3)
    routing_on(tenant, team)
    tenant.lead(phone(1000))  # the pointer is now at reps[0]
    before = tenant.get(f"/api/v1/teams/{team}").get_json()["rr_pointer"]
    with tenant.runtime.sessions() as s:
        leads_before = s.scalar(select(func.count()).select_from(Lead))
        ledger_before = s.scalar(select(func.count()).select_from(OwnershipChange))
    r = tenant.post("/api/v1/routing/preview", "manager", json={"phone": phone(1001), "source": "web"})
    assert r.status_code == 200, r.get_json()
    preview = r.get_json()
    assert preview["owner_id"] == reps[1] and preview["duplicate_of"] is None
    assert tenant.get(f"/api/v1/teams/{team}").get_json()["rr_pointer"] == before
    with tenant.runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Lead)) == leads_before
        assert s.scalar(select(func.count()).select_from(OwnershipChange)) == ledger_before
    real = tenant.lead(phone(1001), source="web")
    assert real["owner_id"] == preview["owner_id"]
    assert ledger(tenant, real["id"])["detail"] == preview["explanation"]
    again = tenant.post("/api/v1/routing/preview", "manager", json={"phone": phone(1001)}).get_json()
    assert again["duplicate_of"] == real["id"]
    assert tenant.post("/api/v1/routing/preview", "rep", json={"phone": phone(1002)}).status_code == 403
    assert tenant.post("/api/v1/routing/preview", json={"phone": "12"}).status_code == 422


# --- hand-off and humans ------------------------------------------------------------------


def test_first_purchase_hands_the_customer_to_the_repurchase_team(tenant):
    sales, sellers = add_team(tenant, "Sales1", reps=1)
    repurchase, keepers = add_team(tenant, "Repurchase", reps=2)
    routing_on(tenant, sales)
    tenant.patch("/api/v1/routing/settings", json={"handoff_enabled": True, "repurchase_team_id": repurchase})
    lead = tenant.lead(phone(1100))
    assert lead["owner_id"] == sellers[0]
    deal = tenant.post(f"/api/v1/leads/{lead['id']}/deals", json={"amount": "100.00"})
    assert deal.status_code == 201 and deal.get_json()["owner_id"] == sellers[0]  # the win stays hers
    moved = tenant.get(f"/api/v1/leads/{lead['id']}").get_json()
    assert moved["team_id"] == repurchase and moved["owner_id"] == keepers[0]
    why = ledger(tenant, lead["id"])
    assert why["reason"] == "handoff" and why["from_user_id"] == sellers[0]
    # a repurchase does not move it again
    tenant.post(f"/api/v1/leads/{lead['id']}/deals", json={"amount": "50.00"})
    assert tenant.get(f"/api/v1/leads/{lead['id']}").get_json()["owner_id"] == keepers[0]


def test_handoff_is_off_by_default_and_never_moves_a_locked_lead(tenant):
    sales, sellers = add_team(tenant, "Sales2", reps=1)
    repurchase, _ = add_team(tenant, "Repurchase2", reps=1)
    routing_on(tenant, sales)
    plain = tenant.lead(phone(1200))
    tenant.post(f"/api/v1/leads/{plain['id']}/deals", json={"amount": "10.00"})
    assert tenant.get(f"/api/v1/leads/{plain['id']}").get_json()["team_id"] == sales
    tenant.patch("/api/v1/routing/settings", json={"handoff_enabled": True, "repurchase_team_id": repurchase})
    locked = tenant.lead(phone(1201))
    assert tenant.patch(f"/api/v1/leads/{locked['id']}", "manager", json={"locked": True}).status_code == 200
    tenant.post(f"/api/v1/leads/{locked['id']}/deals", json={"amount": "10.00"})
    after = tenant.get(f"/api/v1/leads/{locked['id']}").get_json()
    assert after["team_id"] == sales and after["owner_id"] == sellers[0]
    # a manager still can
    r = tenant.post(f"/api/v1/leads/{locked['id']}/assign", "manager", json={"user_id": tenant.users["rep"]})
    assert r.status_code == 200 and r.get_json()["owner_id"] == tenant.users["rep"]


def test_reps_see_and_act_only_on_their_own_leads(tenant):
    mine = tenant.lead(phone(1300), owner_id=tenant.users["rep"])
    theirs = tenant.lead(phone(1301), owner_id=tenant.users["rep2"])
    ids = [x["id"] for x in tenant.get("/api/v1/leads", "rep").get_json()["items"]]
    assert ids == [mine["id"]]
    assert tenant.get(f"/api/v1/leads/{theirs['id']}", "rep").status_code == 404
    assert tenant.post(f"/api/v1/leads/{theirs['id']}/stage", "rep", json={"stage": "contacted"}).status_code == 404
    assert tenant.post(f"/api/v1/leads/{mine['id']}/assign", "rep", json={"user_id": tenant.users["rep"]}).status_code == 403


# --- batches and concurrency ------------------------------------------------------------------


def test_a_batch_is_routed_with_one_hook_call_per_step(tenant):
    from pelago.core.services.intake import Submission, ingest

    team, reps = add_team(tenant, "Batch", reps=3)
    routing_on(tenant, team)
    rt = tenant.runtime
    with rt.tenant_context(tenant.id) as ctx:
        subs = [Submission({"phone": phone(1400 + i)}) for i in range(30)]
        subs.append(Submission({"phone": phone(1400)}))  # a duplicate inside the batch
        subs.append(Submission({"phone": "12"}))  # invalid
        out = ingest(ctx, subs)
        ctx.session.commit()
    assert [o.status for o in out].count("created") == 30
    assert out[30].status == "merged" and out[30].lead_id == out[0].lead_id
    assert out[31].status == "invalid" and "phone" in (out[31].errors or {})
    with rt.sessions() as s:
        owners = s.execute(select(Lead.owner_id, func.count()).where(Lead.team_id == team).group_by(Lead.owner_id)).all()
    assert sorted(n for _, n in owners) == [10, 10, 10]


@pytest.mark.postgres
def test_400_leads_from_8_threads_no_loss_no_duplicate_fair_counts(tenant):
    team, reps = add_team(tenant, "Rush", reps=5)
    routing_on(tenant, team)
    barrier = threading.Barrier(8)

    def submit(worker: int) -> list[int]:
        barrier.wait()
        codes = []
        for k in range(50):
            r = tenant.post("/api/v1/leads", json={"name": f"w{worker}", "phone": phone(2000 + worker * 50 + k)})
            codes.append(r.status_code)
        return codes

    with ThreadPoolExecutor(8) as pool:
        codes = [c for batch in pool.map(submit, range(8)) for c in batch]
    assert codes.count(201) == 400
    with tenant.runtime.sessions() as s:
        rows = s.execute(select(Lead.phone, Lead.owner_id).where(Lead.tenant_id == tenant.id, Lead.team_id == team)).all()
        ledger_rows = s.scalar(select(func.count()).select_from(OwnershipChange).where(
            OwnershipChange.tenant_id == tenant.id, OwnershipChange.to_team_id == team))
    assert len(rows) == 400 and len({p for p, _ in rows}) == 400
    counts = Counter(o for _, o in rows)
    assert set(counts) == set(reps)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert ledger_rows == 400


def test_routing_ignores_other_tenants_teams_and_users(tenant, other_tenant):
    with tenant.runtime.sessions() as s:
        other_team = s.get(Team, other_tenant.team_id)
        assert other_team is not None
    r = tenant.post("/api/v1/routing/preview", json={"phone": phone(3000), "team_id": other_tenant.team_id})
    assert r.status_code == 422
    with tenant.runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(User).where(User.tenant_id == other_tenant.id)) == 4


def test_a_plugin_placing_some_leads_leaves_the_rest_to_the_core(make_app):
    from pelago.core.services.intake import Submission, ingest
    from tests.plugins import recorder

    from .conftest import new_tenant

    app = make_app(["recorder"])
    t = new_tenant(app)
    special, special_reps = add_team(t, "Special", reps=1)
    general, general_reps = add_team(t, "General", reps=1)
    routing_on(t, general)
    t.put("/api/v1/plugins/recorder", json={"enabled": True, "settings": {"team_id": special, "only_source": "vip"}})
    recorder.CALLS.clear()
    with t.runtime.tenant_context(t.id) as ctx:
        out = ingest(ctx, [Submission({"phone": phone(4000 + i), "source": "vip" if i % 2 else "web"}) for i in range(6)])
    assert len(recorder.calls("choose_team", t.id)) == 1  # one call for the whole batch
    assert len(recorder.calls("exclude_candidates", t.id)) == 2  # once per team
    with t.runtime.sessions() as s:
        teams = dict(s.execute(select(Lead.id, Lead.team_id).where(Lead.id.in_([o.lead_id for o in out]))).all())
    assert [teams[o.lead_id] for o in out] == [general, special] * 3
    assert special_reps and general_reps


def test_choose_team_knows_the_ids_the_new_leads_are_written_with(make_app):
    """LeadInfo.new_id: reserved before routing, the lead's id after the insert; merged rows are not routed."""
    from pelago.core.services.intake import Submission, ingest
    from tests.plugins import recorder

    from .conftest import new_tenant

    app = make_app(["recorder"])
    t = new_tenant(app)
    team, _ = add_team(t, "Only", reps=1)
    t.put("/api/v1/plugins/recorder", json={"enabled": True, "settings": {"team_id": team}})
    known = t.lead(phone(4100))
    recorder.CALLS.clear()
    with t.runtime.tenant_context(t.id) as ctx:
        out = ingest(ctx, [Submission({"phone": phone(4100 + i)}) for i in range(4)])
    assert [o.status for o in out] == ["merged", "created", "created", "created"]
    assert out[0].lead_id == known["id"]
    [asked] = recorder.calls("choose_team_ids", t.id)
    assert asked == [(None, o.lead_id) for o in out[1:]]
    assert len({o.lead_id for o in out}) == 4


def test_an_email_only_row_follows_an_earlier_row_of_the_batch_with_that_email(tenant):
    from pelago.core.services.intake import Submission, ingest

    with tenant.runtime.tenant_context(tenant.id) as ctx:
        out = ingest(ctx, [
            Submission({"phone": phone(6000), "email": "same@example.com"}),
            Submission({"email": "SAME@example.com", "name": "Later"}),
        ])
    assert [o.status for o in out] == ["created", "merged"]
    assert out[1].lead_id == out[0].lead_id and out[1].matched_on == "email"


def test_an_email_only_row_matches_the_known_lead_before_a_batch_row_with_that_email(tenant):
    """As one by one: the email-only row goes to the oldest lead with the email, not the batch's new one."""
    from pelago.core.services.intake import Submission, ingest

    with tenant.runtime.tenant_context(tenant.id) as ctx:
        (known,) = ingest(ctx, [Submission({"phone": phone(6100), "email": "known@example.com"})])
        ctx.session.commit()
        out = ingest(ctx, [
            Submission({"phone": phone(6101), "email": "known@example.com"}),
            Submission({"email": "KNOWN@example.com", "name": "Later"}),
        ])
    assert [o.status for o in out] == ["created", "merged"]
    assert out[1].lead_id == known.lead_id != out[0].lead_id and out[1].matched_on == "email"
