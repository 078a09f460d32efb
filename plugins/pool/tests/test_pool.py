"""The pool plugin (公海): pools, claims and their rules, releases, distribution, switching, tenancy.

Days are calendar days in the tenant's timezone (Asia/Shanghai here): the
clock fixture starts at 10:00 Shanghai on 2 March 2026 and tests move it with
``clock.advance``. The sweep has its own file (test_pool_sweep.py), and so do
the concurrency claims (test_pool_concurrency.py, PostgreSQL).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import inspect, select

from pelago.plugin import Lead
from pelago.plugins.pool.models import PoolEntry, RepDay
from pelago.testing import assert_models_match_migrations, run_periodic, scheduler_tick
from tests.routes import load_spec

from .pool_helpers import (
    add_rep,
    claim,
    core_rows,
    count,
    default_pool,
    events,
    held,
    into_pool,
    ledger,
    owner_of,
    phone,
    pool_tenant,
    set_pool,
)

SHANGHAI_MIDNIGHT_UTC_HOUR = 16  # 00:00 in Shanghai is 16:00 UTC the day before


def at(clock, y, m, d, hh, mm=0):
    """Move the frozen clock to a Shanghai wall-clock time."""
    from zoneinfo import ZoneInfo

    clock.at = datetime(y, m, d, hh, mm, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(timezone.utc)


# --- the plugin as deployed ------------------------------------------------------------


def test_it_is_the_pool_entry_point_with_the_standard_shape(engine, make_runtime):
    host = make_runtime(plugins=("pool",)).host
    spec = host.specs["pool"]
    assert host.installed["pool"] == "pelago.plugins.pool:plugin"
    assert [p.name for p in spec.periodic] == ["sweep"] and spec.commands is not None
    assert spec.secret_fields() == {"webhook_secret"}
    for hook in ("exclude_candidates", "check_assign", "lead_released", "lead_assigned", "pool_recycle_due"):
        assert "pool" in host.implementers(hook)
    tables = set(inspect(engine).get_table_names())
    assert {"pool_pool", "pool_member", "pool_entry", "pool_rep_day", "pool_reminder", "pool_sweep"} <= tables
    assert_models_match_migrations(engine, host)


def test_switched_off_routes_are_404_and_hooks_are_not_called(make_app):
    app = make_app()
    t = pool_tenant(app, hold_cap=1)
    lead = t.lead(phone())
    assert t.post(f"/api/v1/leads/{lead['id']}/assign", json={"user_id": t.users["rep"]}).status_code == 200
    second = t.lead(phone())
    r = t.post(f"/api/v1/leads/{second['id']}/assign", json={"user_id": t.users["rep"]})
    assert r.status_code == 409 and r.get_json()["errors"]["plugin"] == "pool"  # on: the cap holds

    assert t.put("/api/v1/plugins/pool", json={"enabled": False}).status_code == 200
    for method, path in (("GET", "/api/v1/pool/pools"), ("POST", "/api/v1/pool/claim"),
                         ("GET", "/api/v1/pool/holdings"), ("GET", "/api/v1/pool/sweeps")):
        r = t.call(method, path, json={"lead_ids": [1]} if method == "POST" else None)
        assert r.status_code == 404 and "pool" in r.get_json()["message"], (path, r.get_json())
    r = t.post(f"/api/v1/leads/{second['id']}/assign", json={"user_id": t.users["rep"]})
    assert r.status_code == 200, r.get_json()  # off: routing and assignment ignore the cap
    assert held(t, t.users["rep"]) == 2
    assert run_periodic(t.runtime, "pool", "sweep", t.id) == {t.id: "skipped"}


def test_the_default_pool_exists_once_enabled(make_app):
    app = make_app()
    t = pool_tenant(app)
    pools = t.get("/api/v1/pool/pools", "rep").get_json()["items"]
    assert [(p["name"], p["is_default"], p["can_admin"]) for p in pools] == [("Default pool", True, False)]
    assert t.get("/api/v1/pool/pools").get_json()["items"][0]["can_admin"] is True


# --- pools and settings -----------------------------------------------------------------


def test_pools_per_team_and_named_members(make_app):
    app = make_app()
    t = pool_tenant(app)
    other_team = t.post("/api/v1/teams", json={"name": "Beijing"}).get_json()["id"]
    outsider = add_rep(t, "outsider", team_id=other_team)
    team_pool = t.post("/api/v1/pool/pools", json={"name": "Sales pool", "team_id": t.team_id}).get_json()
    vip = t.post("/api/v1/pool/pools", json={"name": "VIP", "members": [
        {"user_id": outsider, "role": "member"}, {"user_id": t.users["rep2"], "role": "admin"}]}).get_json()
    assert vip["members"] == [{"role": "admin", "user_id": t.users["rep2"]}, {"role": "member", "user_id": outsider}]
    names = {who: {p["name"] for p in t.get("/api/v1/pool/pools", who).get_json()["items"]}
             for who in ("rep", "rep2", "outsider", "admin")}
    assert names["rep"] == {"Default pool", "Sales pool"}
    assert names["rep2"] == {"Default pool", "Sales pool", "VIP"}
    assert names["outsider"] == {"Default pool", "VIP"}
    assert names["admin"] == {"Default pool", "Sales pool", "VIP"}
    assert t.get(f"/api/v1/pool/pools/{team_pool['id']}", "outsider").status_code == 404
    # One pool per team, unique names: 409; a pool of another team is fine.
    assert t.post("/api/v1/pool/pools", json={"name": "Again", "team_id": t.team_id}).status_code == 409
    assert t.post("/api/v1/pool/pools", json={"name": "VIP"}).status_code == 409
    assert t.post("/api/v1/pool/pools", json={"name": "Beijing", "team_id": other_team}).status_code == 201
    # Only admins create and edit pools; a named pool admin distributes (see below), does not edit.
    assert t.post("/api/v1/pool/pools", "manager", json={"name": "Mine"}).status_code == 403
    assert t.patch(f"/api/v1/pool/pools/{vip['id']}", "rep2", json={"name": "x"}).status_code == 403


@pytest.mark.parametrize(("body", "field"), [
    ({"settings": {"daily_claim_limit": -1}}, "daily_claim_limit"),
    ({"settings": {"daily_claim_limit": "3"}}, "daily_claim_limit"),
    ({"settings": {"cooldown_days": 4000}}, "cooldown_days"),
    ({"settings": {"recycle": {"no_followup": {"days": 0}}}}, "recycle"),
    ({"settings": {"recycle": {"not_won": {"by_source": {"ads": "x"}}}}}, "recycle"),
    ({"settings": {"recycle": {"sometimes": {"days": 3}}}}, "recycle"),
    ({"settings": {"hidden_fields": ["address"]}}, "hidden_fields"),
    ({"settings": {"no_such": 1}}, "no_such"),
    ({"team_id": 987654321}, "team_id"),
    ({"members": [{"user_id": 987654321}]}, "members"),
    ({"name": ""}, "name"),
])
def test_bad_pool_input_is_422_naming_the_field(make_app, body, field):
    app = make_app()
    t = pool_tenant(app)
    pool = default_pool(t)
    r = t.patch(f"/api/v1/pool/pools/{pool['id']}", json=body)
    assert r.status_code == 422, r.get_json()
    errors = r.get_json()["errors"]["json"]
    assert field in errors or field in errors.get("settings", {}), errors
    assert default_pool(t)["settings"] == pool["settings"]  # nothing written


def test_settings_merge_rule_by_rule(make_app):
    app = make_app()
    t = pool_tenant(app)
    pid = default_pool(t)["id"]
    set_pool(t, pid, recycle={"no_followup": {"days": 7, "by_source": {"referral": 14}}})
    got = set_pool(t, pid, recycle={"not_won": {"days": 30}}, daily_claim_limit=5)["settings"]
    assert got["recycle"]["no_followup"] == {"days": 7, "by_source": {"referral": 14}, "by_level": {}}
    assert got["recycle"]["not_won"]["days"] == 30 and got["daily_claim_limit"] == 5
    r = t.patch(f"/api/v1/pool/pools/{pid}", json={"team_id": t.team_id})
    assert r.status_code == 409  # the default pool serves every team without one


def test_tenant_settings_validate_the_webhook_and_mask_the_secret(make_app):
    app = make_app()
    t = pool_tenant(app)
    for bad in ("ftp://x", "http://127.0.0.1:9/h", "http://169.254.169.254/latest", "http://10.0.0.8/h"):
        r = t.put("/api/v1/plugins/pool", json={"settings": {"webhook_url": bad}})
        assert r.status_code == 422 and "webhook_url" in r.get_json()["errors"]["json"]["settings"], bad
    r = t.put("/api/v1/plugins/pool", json={"settings": {"webhook_url": "https://hooks.example.com/h",
                                                          "webhook_secret": "s3cret"}})
    assert r.status_code == 200 and r.get_json()["settings"]["webhook_secret"] == "********"


# --- claims ------------------------------------------------------------------------------


def test_a_claim_sets_the_owner_writes_the_ledger_and_the_event(make_app):
    app = make_app()
    t = pool_tenant(app)
    (lead,) = into_pool(t)
    r = claim(t, "rep", lead)
    assert r.status_code == 200 and r.get_json() == {"done": [lead], "refused": []}
    assert owner_of(t, lead) == t.users["rep"]
    rows = ledger(t, lead)
    pool_rule = f"pool:{default_pool(t)['id']}"
    assert [(x.reason, x.to_user_id, x.actor_id, x.rule) for x in rows] == [
        ("created", None, t.users["admin"], pool_rule), ("claimed", t.users["rep"], t.users["rep"], pool_rule)]
    assert events(t, "lead_assigned")[-1] == [{
        "lead_id": lead, "from_user_id": None, "to_user_id": t.users["rep"], "team_id": t.team_id,
        "reason": "claimed", "rule": f"pool:{default_pool(t)['id']}", "pool_id": default_pool(t)["id"]}]
    with t.runtime.tenant_session(t.id) as s:
        assert s.get(PoolEntry, lead) is None  # out of the pool
    r = claim(t, "rep2", lead)
    assert r.status_code == 409
    assert r.get_json()["errors"]["refused"] == [{"lead_id": lead, "reason": "claimed by someone else first"}]
    assert claim(t, "rep", lead).get_json()["errors"]["refused"][0]["reason"] == "you hold it already"


def test_several_at_once_some_refused(make_app):
    app = make_app()
    t = pool_tenant(app)
    a, b, c = into_pool(t, 3)
    assert claim(t, "rep2", b).status_code == 200
    stranger = t.lead(phone())["id"]  # unowned, but in no pool
    r = claim(t, "rep", a, b, c, stranger, 2**62)
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"done": [a, c], "refused": [
        {"lead_id": b, "reason": "claimed by someone else first"},
        {"lead_id": stranger, "reason": "not in a pool you may claim from"},
        {"lead_id": 2**62, "reason": "not in a pool you may claim from"}]}


def test_the_daily_limit_counts_claims_made_today_in_the_tenants_calendar(make_app, clock):
    app = make_app()
    at(clock, 2026, 3, 2, 23, 0)  # 23:00 in Shanghai, 15:00 UTC
    t = pool_tenant(app, daily_claim_limit=2)
    leads = into_pool(t, 5)
    assert claim(t, "rep", leads[0]).status_code == 200
    r = claim(t, "rep", leads[1], leads[2])
    assert r.status_code == 409 and "at most 2 claims a day" in r.get_json()["message"]
    assert owner_of(t, leads[1]) is None and owner_of(t, leads[2]) is None  # all or nothing
    assert claim(t, "rep", leads[1]).status_code == 200
    # Releasing gives no claim back.
    assert t.post("/api/v1/pool/release", "rep", json={"lead_ids": [leads[1]], "reason": "x"}).status_code == 200
    r = claim(t, "rep", leads[2])
    assert r.status_code == 409 and r.get_json()["errors"] == {"daily_claim_limit": 2}
    assert claim(t, "rep2", leads[2]).status_code == 200  # per user
    clock.advance(minutes=59)  # 23:59 Shanghai: still the same day
    assert claim(t, "rep", leads[3]).status_code == 409
    clock.advance(minutes=2)  # 00:01 in Shanghai, still 2 March in UTC: a new day for the tenant
    assert claim(t, "rep", leads[3]).status_code == 200
    with t.runtime.tenant_session(t.id) as s:
        days = dict(s.execute(select(RepDay.day, RepDay.claims).where(RepDay.user_id == t.users["rep"])).all())
    assert {str(k): v for k, v in days.items()} == {"2026-03-02": 2, "2026-03-03": 1}


def test_previous_owner_cooldown_turns_at_shanghai_midnight(make_app, clock):
    app = make_app()
    t = pool_tenant(app, cooldown_days=1)
    at(clock, 2026, 3, 2, 9, 0)
    (lead,) = into_pool(t)
    assert claim(t, "rep", lead).status_code == 200
    at(clock, 2026, 3, 2, 23, 50)  # 15:50 UTC
    r = t.post("/api/v1/pool/release", "rep", json={"lead_ids": [lead], "reason": "not interested"})
    assert r.status_code == 200, r.get_json()
    r = claim(t, "rep", lead)
    assert r.status_code == 409
    assert r.get_json()["errors"]["refused"][0]["reason"] == (
        "you released it on 2026-03-02T23:50+08:00; you may claim it again from 2026-03-03T00:00+08:00")
    listed = t.get(f"/api/v1/pool/pools/{default_pool(t)['id']}/leads", "rep").get_json()["items"]
    assert listed[0]["claimable_from"] == "2026-03-03T00:00:00+08:00"
    assert t.get(f"/api/v1/pool/pools/{default_pool(t)['id']}/leads?claimable=true", "rep").get_json()["items"] == []
    clock.advance(minutes=9)  # 23:59
    assert claim(t, "rep", lead).status_code == 409
    clock.advance(minutes=2)  # 00:01 on 3 March in Shanghai; still 16:01 on 2 March in UTC
    assert claim(t, "rep", lead).status_code == 200


def test_others_may_claim_during_the_cooldown(make_app, clock):
    app = make_app()
    t = pool_tenant(app, cooldown_days=3)
    (lead,) = into_pool(t)
    claim(t, "rep", lead)
    t.post("/api/v1/pool/release", "rep", json={"lead_ids": [lead], "reason": "x"})
    assert claim(t, "rep2", lead).status_code == 200


def test_new_lead_protection_across_the_day_boundary(make_app, clock):
    app = make_app()
    t = pool_tenant(app, protect_days=2)
    at(clock, 2026, 3, 2, 23, 30)
    (lead,) = into_pool(t)
    r = claim(t, "rep", lead)
    assert r.status_code == 409
    assert r.get_json()["errors"]["refused"][0]["reason"] == (
        "it entered the pool on 2026-03-02T23:30+08:00; protected until 2026-03-04T00:00+08:00")
    at(clock, 2026, 3, 3, 23, 59)
    assert claim(t, "rep", lead).status_code == 409
    at(clock, 2026, 3, 4, 0, 0)  # two calendar days after it entered (24.5 hours later)
    assert claim(t, "rep", lead).status_code == 200


def test_hidden_leads_are_neither_listed_nor_claimable(make_app, clock):
    app = make_app()
    t = pool_tenant(app)
    pid = default_pool(t)["id"]
    a, b = into_pool(t, 2)
    r = t.post("/api/v1/pool/hide", json={"lead_ids": [a], "until": "2026-03-05T00:00:00+08:00"})
    assert r.status_code == 200 and r.get_json()["done"] == [a]
    assert [x["id"] for x in t.get(f"/api/v1/pool/pools/{pid}/leads", "rep").get_json()["items"]] == [b]
    assert {x["id"] for x in t.get(f"/api/v1/pool/pools/{pid}/leads").get_json()["items"]} == {a, b}  # admins see
    assert "hidden from the pool until 2026-03-05T00:00+08:00" in claim(t, "rep", a).get_json()["message"]
    assert t.post("/api/v1/pool/hide", "rep", json={"lead_ids": [b], "until": None}).status_code == 409
    at(clock, 2026, 3, 5, 0, 0)
    assert claim(t, "rep", a).status_code == 200
    r = t.post("/api/v1/pool/hide", json={"lead_ids": [b], "until": "2020-01-01T00:00:00Z"})
    assert r.status_code == 422 and "until" in r.get_json()["errors"]["json"]


# --- the hold cap --------------------------------------------------------------------------


def test_the_hold_cap_refuses_claims_assignment_and_routing(make_app):
    app = make_app()
    t = pool_tenant(app, hold_cap=2)
    leads = into_pool(t, 4)
    assert claim(t, "rep", leads[0], leads[1]).status_code == 200
    r = claim(t, "rep", leads[2])
    assert r.status_code == 409 and r.get_json()["errors"]["plugin"] == "pool"
    assert "holds 2 leads; the pool's hold cap is 2" in r.get_json()["message"]
    assert owner_of(t, leads[2]) is None
    # A won customer does not count (by default), so there is room again.
    assert t.post(f"/api/v1/leads/{leads[0]}/stage", "rep", json={"stage": "won"}).status_code == 200
    assert claim(t, "rep", leads[2]).status_code == 200
    # Manual assignment is refused naming the plugin.
    other = t.lead(phone())["id"]
    r = t.post(f"/api/v1/leads/{other}/assign", "manager", json={"user_id": t.users["rep"]})
    assert r.status_code == 409 and r.get_json()["errors"] == {"plugin": "pool"}
    # Counting won customers too is a setting.
    set_pool(t, default_pool(t)["id"], hold_cap=3, hold_cap_counts_won=True)
    assert claim(t, "rep", leads[3]).status_code == 409
    # Routing leaves the capped rep out.
    t.patch("/api/v1/routing/settings", json={"auto_routing": True, "default_team_id": t.team_id})
    for who in ("manager", "rep2"):
        t.patch(f"/api/v1/users/{t.users[who]}", json={"on_leave": True})
    routed = t.lead(phone())
    assert routed["owner_id"] is None
    history = t.get(f"/api/v1/leads/{routed['id']}/history").get_json()["items"]
    created = next(h for h in history if h["type"] == "ownership")
    assert "hold cap is 3" in created["detail"]["excluded"][str(t.users["rep"])]


def test_distribution_is_for_pool_admins_and_respects_the_cap(make_app):
    app = make_app()
    t = pool_tenant(app, hold_cap=1)
    a, b = into_pool(t, 2)
    r = t.post("/api/v1/pool/distribute", "rep2", json={"lead_ids": [a], "user_id": t.users["rep"]})
    assert r.status_code == 409 and r.get_json()["errors"]["refused"][0]["reason"] == "not in a pool you administer"
    r = t.post("/api/v1/pool/distribute", "manager", json={"lead_ids": [a], "user_id": t.users["rep"], "note": "yours"})
    assert r.status_code == 200 and r.get_json()["done"] == [a]
    last = ledger(t, a)[-1]
    assert (last.reason, last.to_user_id, last.actor_id, last.note) == ("distributed", t.users["rep"],
                                                                        t.users["manager"], "yours")
    r = t.post("/api/v1/pool/distribute", "manager", json={"lead_ids": [b], "user_id": t.users["rep"]})
    assert r.status_code == 409 and r.get_json()["errors"]["plugin"] == "pool"
    r = t.post("/api/v1/pool/distribute", json={"lead_ids": [b], "user_id": 987654321})
    assert r.status_code == 422 and "user_id" in r.get_json()["errors"]["json"]


# --- releases and moves ------------------------------------------------------------------------


def test_release_with_a_reason_into_a_chosen_pool(make_app):
    app = make_app()
    t = pool_tenant(app)
    vip = t.post("/api/v1/pool/pools", json={"name": "VIP"}).get_json()
    mine = t.lead(phone(), who="rep")["id"]
    theirs = t.lead(phone(), who="rep2")["id"]
    r = t.post("/api/v1/pool/release", "rep", json={"lead_ids": [mine, theirs], "reason": "wrong number",
                                                     "pool_id": vip["id"]})
    assert r.status_code == 200
    assert r.get_json() == {"done": [mine], "refused": [{"lead_id": theirs, "reason": "not a lead you hold"}]}
    assert owner_of(t, mine) is None and owner_of(t, theirs) == t.users["rep2"]
    last = ledger(t, mine)[-1]
    assert (last.reason, last.from_user_id, last.note, last.detail) == ("released", t.users["rep"], "wrong number",
                                                                       {"pool_id": vip["id"]})
    assert events(t, "lead_released")[-1] == [{"lead_id": mine, "from_user_id": t.users["rep"],
                                               "reason": "released", "rule": None, "pool_id": vip["id"]}]
    listed = t.get(f"/api/v1/pool/pools/{vip['id']}/leads").get_json()["items"]
    assert [(x["id"], x["reason"], x["from_user_id"]) for x in listed] == [(mine, "released", t.users["rep"])]
    # A manager releases anyone's lead, including a locked one; a rep not her locked one.
    t.patch(f"/api/v1/leads/{theirs}", "manager", json={"locked": True})
    r = t.post("/api/v1/pool/release", "rep2", json={"lead_ids": [theirs], "reason": "x"})
    assert r.status_code == 409 and "locked" in r.get_json()["message"]
    r = t.post("/api/v1/pool/release", "manager", json={"lead_ids": [theirs], "reason": "reshuffle"})
    assert r.status_code == 200 and default_pool(t)["id"] in {
        x["pool_id"] for x in t.get(f"/api/v1/pool/pools/{default_pool(t)['id']}/leads").get_json()["items"]}
    assert t.post("/api/v1/pool/release", "rep", json={"lead_ids": [mine], "reason": "x", "pool_id": 2**62}
                  ).status_code == 404


def test_a_release_through_the_core_api_enters_the_teams_pool(make_app):
    app = make_app()
    t = pool_tenant(app)
    team_pool = t.post("/api/v1/pool/pools", json={"name": "Sales", "team_id": t.team_id}).get_json()
    lead = t.lead(phone(), who="rep")["id"]
    assert t.post(f"/api/v1/leads/{lead}/assign", "manager", json={"user_id": None}).status_code == 200
    listed = t.get(f"/api/v1/pool/pools/{team_pool['id']}/leads").get_json()["items"]
    assert [(x["id"], x["reason"], x["rule"], x["from_user_id"]) for x in listed] == [
        (lead, "released", "manual", t.users["rep"])]
    assert claim(t, "rep2", lead).status_code == 200


def test_move_between_pools_restarts_protection(make_app, clock):
    app = make_app()
    t = pool_tenant(app)
    vip = t.post("/api/v1/pool/pools", json={"name": "VIP"}).get_json()
    set_pool(t, vip["id"], protect_days=1)
    (lead,) = into_pool(t)
    assert t.post("/api/v1/pool/move", "rep", json={"lead_ids": [lead], "pool_id": vip["id"]}).status_code == 404
    r = t.post("/api/v1/pool/move", "manager", json={"lead_ids": [lead], "pool_id": vip["id"], "note": "hot"})
    assert r.status_code == 200 and r.get_json()["done"] == [lead]
    assert [x["id"] for x in t.get(f"/api/v1/pool/pools/{vip['id']}/leads").get_json()["items"]] == [lead]
    r = claim(t, "rep", lead, pool_id=default_pool(t)["id"])  # no longer there
    assert r.status_code == 409
    assert r.get_json()["errors"]["refused"][0]["reason"] == f"not in pool {default_pool(t)['id']} (it is in pool {vip['id']})"
    assert claim(t, "rep", lead).status_code == 409  # protected in its new pool
    clock.advance(days=1)
    assert claim(t, "rep", lead, pool_id=vip["id"]).status_code == 200


# --- what members see --------------------------------------------------------------------------


def test_contacts_are_masked_until_claimed_and_filters_work(make_app):
    app = make_app()
    t = pool_tenant(app, hidden_fields=["name", "phone", "email"])
    pid = default_pool(t)["id"]
    a = t.post(f"/api/v1/pool/pools/{pid}/leads", json={
        "name": "张伟", "phone": "13800138000", "email": "zw@example.com", "source": "ads",
        "attributes": {"level": "A"}}).get_json()["id"]
    into_pool(t, 2, source="fair")
    items = t.get(f"/api/v1/pool/pools/{pid}/leads?source=ads", "rep").get_json()["items"]
    assert [(x["id"], x["name"], x["phone"], x["email"], x["contact_hidden"], x["level"]) for x in items] == [
        (a, "张*", "**********8000", "z***@example.com", True, "A")]
    assert t.get(f"/api/v1/pool/pools/{pid}/leads?level=A", "rep").get_json()["items"][0]["id"] == a
    assert len(t.get(f"/api/v1/pool/pools/{pid}/leads?level=B", "rep").get_json()["items"]) == 0
    assert t.get(f"/api/v1/pool/pools/{pid}/leads?source=ads").get_json()["items"][0]["phone"] == "+8613800138000"
    claim(t, "rep", a)
    assert t.get(f"/api/v1/leads/{a}", "rep").get_json()["phone"] == "+8613800138000"
    # Pages: newest first, a cursor for the next.
    page = t.get(f"/api/v1/pool/pools/{pid}/leads?limit=1", "rep").get_json()
    rest = t.get(f"/api/v1/pool/pools/{pid}/leads?limit=1&cursor={page['next_cursor']}", "rep").get_json()
    assert page["items"][0]["id"] > rest["items"][0]["id"] and rest["next_cursor"] is None


def test_the_daily_view_limit_stops_scraping(make_app, clock):
    app = make_app()
    t = pool_tenant(app, daily_view_limit=3)
    pid = default_pool(t)["id"]
    into_pool(t, 5)
    assert len(t.get(f"/api/v1/pool/pools/{pid}/leads?limit=2", "rep").get_json()["items"]) == 2
    assert len(t.get(f"/api/v1/pool/pools/{pid}/leads?limit=5", "rep").get_json()["items"]) == 1  # what is left
    r = t.get(f"/api/v1/pool/pools/{pid}/leads", "rep")
    assert r.status_code == 429 and r.get_json()["errors"] == {"daily_view_limit": 3}
    assert len(t.get(f"/api/v1/pool/pools/{pid}/leads").get_json()["items"]) == 5  # admins are not limited
    assert t.get(f"/api/v1/pool/pools/{pid}/leads", "rep2").status_code == 200
    clock.advance(days=1)
    assert t.get(f"/api/v1/pool/pools/{pid}/leads", "rep").status_code == 200


def test_create_into_a_pool_skips_routing_and_merges_duplicates(make_app):
    app = make_app()
    t = pool_tenant(app)
    t.patch("/api/v1/routing/settings", json={"auto_routing": True, "default_team_id": t.team_id})
    pid = default_pool(t)["id"]
    r = t.post(f"/api/v1/pool/pools/{pid}/leads", json={"name": "x", "phone": "13800138555", "note": "fair"})
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["merged"] is False and body["reason"] == "created" and owner_of(t, body["id"]) is None
    owned = t.lead("13800138556", who="rep")
    r = t.post(f"/api/v1/pool/pools/{pid}/leads", json={"phone": "+86 138 0013 8556"})
    assert r.status_code == 200 and r.get_json()["merged"] is True and r.get_json()["id"] == owned["id"]
    assert owner_of(t, owned["id"]) == t.users["rep"]  # not moved into the pool
    r = t.post(f"/api/v1/pool/pools/{pid}/leads", "rep", json={"phone": phone()})
    assert r.status_code == 404  # reps do not create into pools
    r = t.post(f"/api/v1/pool/pools/{pid}/leads", json={"phone": "12345"})
    assert r.status_code == 422 and "phone" in r.get_json()["errors"]["json"]


# --- remaining days ------------------------------------------------------------------------


def test_holdings_show_the_days_left_per_lead(make_app, clock):
    app = make_app()
    at(clock, 2026, 3, 2, 22, 0)
    t = pool_tenant(app, recycle={"no_followup": {"days": 7, "by_source": {"referral": 14},
                                                  "by_level": {"A": None}},
                                  "not_won": {"days": 30}})
    plain = t.lead(phone(), who="rep")["id"]
    referral = t.lead(phone(), who="rep", source="referral")["id"]
    vip = t.lead(phone(), who="rep", attributes={"level": "A"})["id"]
    won = t.lead(phone(), who="rep")["id"]
    t.post(f"/api/v1/leads/{won}/stage", "rep", json={"stage": "won"})
    at(clock, 2026, 3, 4, 9, 0)
    t.post(f"/api/v1/leads/{plain}/activities", "rep", json={"kind": "call"})
    items = {x["lead_id"]: x for x in t.get("/api/v1/pool/holdings", "rep").get_json()["items"]}
    assert (items[plain]["rule"], items[plain]["due_at"], items[plain]["remaining_days"]) == (
        "no_followup", "2026-03-11T00:00:00+08:00", 7)  # called on 4 March: 7 days from then
    assert (items[referral]["rule"], items[referral]["remaining_days"]) == ("no_followup", 12)  # 16 March
    assert (items[vip]["rule"], items[vip]["due_at"]) == ("not_won", "2026-04-01T00:00:00+08:00")
    assert (items[won]["exempt"], items[won]["due_at"], items[won]["remaining_days"]) == ("won customer", None, None)
    assert t.get(f"/api/v1/pool/holdings?user_id={t.users['rep2']}", "rep").status_code == 403
    assert {x["lead_id"] for x in t.get(f"/api/v1/pool/holdings?user_id={t.users['rep']}", "manager"
                                         ).get_json()["items"]} == {plain, referral, vip, won}


# --- webhooks ------------------------------------------------------------------------------------


@pytest.fixture
def receiver(monkeypatch):
    """A local HTTP server that records what it is sent (and fails while told to).

    It listens on loopback, which only an operator's ``PELAGO_OUTBOUND_ALLOW_PRIVATE`` permits.
    """
    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    import http.server
    import threading

    got: list[dict] = []
    state = {"fail": False}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append({"headers": dict(self.headers), "body": body})
            self.send_response(500 if state["fail"] else 204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}/hook", "got": got, "state": state}
    server.shutdown()
    server.server_close()


def test_pool_events_reach_the_tenants_webhook_signed(make_app, receiver, clock):
    import hashlib
    import hmac
    import json

    app = make_app()
    t = pool_tenant(app)
    t.put("/api/v1/plugins/pool", json={"settings": {"webhook_url": receiver["url"], "webhook_secret": "s3cret"}})
    (lead,) = into_pool(t)
    claim(t, "rep", lead)
    t.post("/api/v1/pool/release", "rep", json={"lead_ids": [lead], "reason": "x"})
    kinds = [json.loads(g["body"])["event"] for g in receiver["got"]]
    assert kinds == ["pool.claimed", "pool.released"]
    first = receiver["got"][0]
    expected = "sha256=" + hmac.new(b"s3cret", first["body"], hashlib.sha256).hexdigest()
    assert first["headers"]["X-Pelago-Signature"] == expected
    body = json.loads(first["body"])
    assert body["tenant"] == t.slug and body["items"][0]["lead_id"] == lead and body["event_id"]
    assert first["headers"]["X-Pelago-Event-Id"] == str(body["event_id"])

    # A failing receiver: the event is delivered (the post was queued in its transaction), the post
    # is queued again with backoff, shown to admins, and sent by a later scheduler tick.
    receiver["state"]["fail"] = True
    claim(t, "rep2", lead)
    (state,) = core_rows(t, "SELECT state FROM core_event_delivery WHERE tenant_id = :t AND plugin = 'pool' "
                            "ORDER BY id DESC LIMIT 1")
    assert tuple(state) == ("delivered",)
    (post,) = t.get("/api/v1/posts?status=queued").get_json()["items"]
    assert (post["plugin"], post["attempts"], post["answer_status"]) == ("pool", 1, 500)
    assert post["last_error"].endswith("answered 500") and post["url"] == receiver["url"]
    receiver["state"]["fail"] = False
    scheduler_tick(t.runtime, t.id)  # not due yet: backoff
    assert len(receiver["got"]) == 3
    clock.advance(minutes=1)
    scheduler_tick(t.runtime, t.id)
    assert len(receiver["got"]) == 4 and json.loads(receiver["got"][-1]["body"])["event"] == "pool.claimed"
    assert t.get("/api/v1/posts?status=sent&plugin=pool").get_json()["items"][0]["id"] == post["id"]

    # The sweep's reminders and recycles go there too.
    set_pool(t, default_pool(t)["id"], recycle={"no_followup": {"days": 7}}, remind_days_before=2)
    held_lead = t.lead(phone(), who="rep")["id"]
    clock.advance(days=6)
    assert run_periodic(t.runtime, "pool", "sweep", t.id) == {t.id: "done"}
    clock.advance(days=2)
    assert run_periodic(t.runtime, "pool", "sweep", t.id) == {t.id: "done"}
    sent = [json.loads(g["body"]) for g in receiver["got"][-2:]]
    both = sorted([lead, held_lead])  # the lead rep2 claimed above is held too
    assert [(b["event"], [i["lead_id"] for i in b["items"]]) for b in sent] == [
        ("pool.recycle_due", both), ("pool.recycled", both)]
    assert sent[1]["items"][0]["rule"] == "no_followup"


# --- tenancy and bad input -------------------------------------------------------------------


def test_another_tenants_pools_and_leads_are_not_found(make_app):
    app = make_app()
    a, b = pool_tenant(app), pool_tenant(app)
    a_pool = default_pool(a)["id"]
    (a_lead,) = into_pool(a)
    for method, path, body in (
        ("GET", f"/api/v1/pool/pools/{a_pool}", None),
        ("PATCH", f"/api/v1/pool/pools/{a_pool}", {"name": "mine now"}),
        ("GET", f"/api/v1/pool/pools/{a_pool}/leads", None),
        ("POST", f"/api/v1/pool/pools/{a_pool}/leads", {"phone": phone()}),
        ("POST", "/api/v1/pool/claim", {"lead_ids": [a_lead], "pool_id": a_pool}),
        ("POST", "/api/v1/pool/move", {"lead_ids": [a_lead], "pool_id": a_pool}),
        ("POST", "/api/v1/pool/release", {"lead_ids": [a_lead], "reason": "x", "pool_id": a_pool}),
    ):
        r = b.call(method, path, json=body)
        assert r.status_code == 404, (path, r.get_json())
    r = claim(b, "rep", a_lead)
    assert r.status_code == 409 and r.get_json()["errors"]["refused"][0]["reason"] == "not in a pool you may claim from"
    r = b.post("/api/v1/pool/distribute", json={"lead_ids": [a_lead], "user_id": a.users["rep"]})
    assert r.status_code == 422  # A's user is no user of B
    assert owner_of(a, a_lead) is None and default_pool(a)["name"] == "Default pool"


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/pool/claim", {}, "lead_ids"),
    ("/api/v1/pool/claim", {"lead_ids": []}, "lead_ids"),
    ("/api/v1/pool/claim", {"lead_ids": list(range(1, 102))}, "lead_ids"),
    ("/api/v1/pool/claim", {"lead_ids": ["1"]}, "lead_ids"),
    ("/api/v1/pool/claim", {"lead_ids": [2**63]}, "lead_ids"),
    ("/api/v1/pool/claim", {"lead_ids": [1], "pool_id": 0}, "pool_id"),
    ("/api/v1/pool/release", {"lead_ids": [1]}, "reason"),
    ("/api/v1/pool/release", {"lead_ids": [1], "reason": ""}, "reason"),
    ("/api/v1/pool/distribute", {"lead_ids": [1]}, "user_id"),
    ("/api/v1/pool/move", {"lead_ids": [1]}, "pool_id"),
    ("/api/v1/pool/hide", {"lead_ids": [1], "until": "tomorrow"}, "until"),
    ("/api/v1/pool/pools", {"name": "x" * 101}, "name"),
    ("/api/v1/pool/pools", {"name": "x", "members": [{"user_id": 1, "role": "owner"}]}, "members"),
])
def test_bad_bodies_are_422_with_field_errors(make_app, path, body, field):
    app = make_app()
    t = pool_tenant(app)
    r = t.post(path, json=body)
    assert r.status_code == 422, r.get_json()
    assert field in r.get_json()["errors"]["json"]


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "cursor=nope", "stage=gone", "claimable=maybe",
                                   "entered_after=yesterday", "cursor=eyJpZCI6IDEwMDAwMDAwMDAwMDAwMDAwMDAwMDB9"])
def test_bad_queries_are_422(make_app, query):
    app = make_app()
    t = pool_tenant(app)
    r = t.get(f"/api/v1/pool/pools/{default_pool(t)['id']}/leads?{query}")
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["errors"]["query"]


@pytest.mark.parametrize("path", ["/api/v1/pool/pools", "/api/v1/pool/pools/{pool}/leads", "/api/v1/pool/holdings",
                                  "/api/v1/pool/sweep/preview", "/api/v1/pool/sweeps"])
@pytest.mark.parametrize("last_id", [2**63, -(2**63) - 1, 10**30])
def test_a_cursor_past_bigint_is_422(make_app, path, last_id):
    import base64
    import json

    app = make_app()
    t = pool_tenant(app)
    cursor = base64.urlsafe_b64encode(json.dumps({"id": last_id}).encode()).decode().rstrip("=")
    r = t.get(path.format(pool=default_pool(t)["id"]) + f"?cursor={cursor}")
    assert r.status_code == 422 and "cursor" in r.get_json()["errors"]["query"], r.get_json()


def test_nothing_is_written_for_a_refused_claim(make_app):
    app = make_app()
    t = pool_tenant(app, daily_claim_limit=0)
    (lead,) = into_pool(t)

    def counts():
        rows = len(ledger(t, lead))
        with t.runtime.tenant_session(t.id) as s:
            return (count(t, "core_event"),
                    rows, s.get(PoolEntry, lead) is not None, s.scalar(select(Lead.version).where(Lead.id == lead)))

    before = counts()
    assert claim(t, "rep", lead).status_code == 409
    assert counts() == before


# --- contract: generated input never gets a 5xx and matches the spec ----------------------------------

CONTRACT = schemathesis.openapi.from_dict(load_spec(("pool",))).include(path_regex=r"^/api/v1/pool")


@pytest.fixture
def pooled(make_app):
    app = make_app(("pool",))
    t = pool_tenant(app, recycle={"no_followup": {"days": 1}})
    ids = into_pool(t, 2)
    return app, t, ids, [default_pool(t)["id"]]


@CONTRACT.parametrize()
@CONTRACT.given(data=st.data())
@settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck),
          derandomize=os.environ.get("PELAGO_CONTRACT_RANDOM") != "1")
def test_generated_requests(case, data, pooled):
    app, t, ids, pool_ids = pooled
    if case.path_parameters and data.draw(st.booleans(), label="existing id"):
        case.path_parameters = {"pool_id": data.draw(st.sampled_from(pool_ids), label="pool_id")}
    if isinstance(case.body, dict) and "lead_ids" in case.body and data.draw(st.booleans(), label="real leads"):
        case.body = {**case.body, "lead_ids": ids}
    response = case.call(app=app, headers=t.headers("admin"))
    case.validate_response(response, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
    ])


def test_openapi_documents_the_pool_routes():
    paths = load_spec(("pool",))["paths"]
    for path in ("/api/v1/pool/pools", "/api/v1/pool/pools/{pool_id}", "/api/v1/pool/pools/{pool_id}/leads",
                 "/api/v1/pool/claim", "/api/v1/pool/release", "/api/v1/pool/distribute", "/api/v1/pool/move",
                 "/api/v1/pool/hide", "/api/v1/pool/holdings", "/api/v1/pool/sweep/preview", "/api/v1/pool/sweeps"):
        assert path in paths, path


def test_a_csv_import_straight_into_a_pool(make_app):
    import io

    t = pool_tenant(make_app())
    team = t.post("/api/v1/pool/pools", json={"name": "Imports", "team_id": t.team_id}).get_json()
    assert "id" in team, team
    t.patch("/api/v1/routing/settings", json={"auto_routing": True, "default_team_id": t.team_id})
    t.lead("13800000001", name="Known")  # routed to a rep; the import's duplicate must not move it
    csv_ = "姓名,手机号\n张三,13800000001\n李四,13800000002\n王五,13800000003\n坏,12\n".encode("gb18030")
    r = t.post(f"/api/v1/pool/pools/{team['id']}/imports", "rep",
               data={"file": (io.BytesIO(csv_), "leads.csv")}, content_type="multipart/form-data")
    assert r.status_code == 404, r.get_json()  # not a pool admin: nothing stored
    r = t.post(f"/api/v1/pool/pools/{team['id']}/imports", "admin",
               data={"file": (io.BytesIO(csv_), "leads.csv")}, content_type="multipart/form-data")
    assert r.status_code == 202, r.get_json()
    imp = t.get(r.headers["Location"]).get_json()
    assert (imp["status"], imp["created_leads"], imp["merged_rows"], imp["failed_rows"]) == ("done", 2, 1, 1)
    with t.runtime.tenant_session(t.id) as s:
        entries = dict(s.execute(select(PoolEntry.lead_id, PoolEntry.pool_id)).all())
        leads = {p: (i, o) for i, p, o in s.execute(select(Lead.id, Lead.phone, Lead.owner_id))}
    assert leads["+8613800000002"][1] is None and leads["+8613800000003"][1] is None  # not routed
    assert entries[leads["+8613800000002"][0]] == team["id"] and entries[leads["+8613800000003"][0]] == team["id"]
    assert leads["+8613800000001"][0] not in entries and leads["+8613800000001"][1] is not None  # stays with its rep
    assert [x.reason for x in ledger(t, leads["+8613800000002"][0])] == ["imported"]
    listed = t.get(f"/api/v1/pool/pools/{team['id']}/leads", query_string={"reason": "imported"})
    assert listed.status_code == 200, listed.get_json()  # was a 422: the filter did not know the reason
    assert {x["id"] for x in listed.get_json()["items"]} == {leads["+8613800000002"][0], leads["+8613800000003"][0]}
    assert {x["reason"] for x in listed.get_json()["items"]} == {"imported"}
    other = pool_tenant(make_app())
    assert other.post(f"/api/v1/pool/pools/{team['id']}/imports", data={"file": (io.BytesIO(csv_), "x.csv")},
                      content_type="multipart/form-data").status_code == 404
