"""Trials from the CRM, refunds of remaining hours as core refunds, deals that open accounts, switching off."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from pelago.plugin import tenant_context
from pelago.plugins.scheduling.models import Account, Attendance
from pelago.testing import run_periodic

from .helpers import BASE, ok, school


def test_a_trial_outcome_reaches_the_leads_history_and_stage(app, tenant, clock):
    s = school(tenant)
    trial_class = s.new_class("Trial Maths", room=s.room, trial=True)
    a = s.student("13800000301", source="douyin")
    b = s.student("13800000302", source="referral")
    t1 = ok(s.post("/trials", {"lead_id": a, "class_id": trial_class, "starts_at": "2026-03-02T08:00:00+08:00",
                               "ends_at": "2026-03-02T09:00:00+08:00"}), 201)
    regular = ok(s.lesson("2026-03-02T09:00:00+08:00", "2026-03-02T10:00:00+08:00"), 201)
    t2 = ok(s.post("/trials", {"lead_id": b, "lesson_id": regular["id"]}), 201)
    assert t1["source"] == "douyin" and b in ok(s.get(f"/lessons/{regular['id']}"))["students"]
    # a trial seat is never charged
    ok(s.post(f"/lessons/{regular['id']}/attendance", {"marks": [{"lead_id": b, "status": "present"}]}))
    out = ok(s.post(f"/trials/{t2['id']}/outcome", {"outcome": "attended"}))
    assert out["outcome"] == "attended"
    lead_b = ok(tenant.get(f"/api/v1/leads/{b}"))
    assert lead_b["stage"] == "qualified"
    history = ok(tenant.get(f"/api/v1/leads/{b}/history"))["items"]
    assert any(h["type"] == "activity" and "attended the trial" in h["note"] for h in history)
    assert any(h["type"] == "stage" for h in history)
    # converted: a core deal for the package, which opens the student's account
    conv = ok(s.post(f"/trials/{t1['id']}/outcome", {"outcome": "converted", "package_id": s.package}))
    assert conv["deal_id"] and conv["account_id"]
    assert ok(tenant.get(f"/api/v1/leads/{a}"))["stage"] == "won"
    deals = ok(tenant.get("/api/v1/deals", query_string={"lead_id": a}))["items"]
    assert [d["id"] for d in deals] == [conv["deal_id"]] and deals[0]["amount"] == "4000.00"
    assert s.post(f"/trials/{t1['id']}/outcome", {"outcome": "no_show"}).status_code == 409
    report = ok(s.get("/reports/trials"))["items"]
    by_source = {r["key"]: r for r in report if r["by"] == "source"}
    assert by_source["douyin"]["converted"] == 1 and by_source["douyin"]["rate"] == "1.0000"
    assert by_source["referral"]["converted"] == 0 and by_source["referral"]["decided"] == 1
    by_teacher = [r for r in report if r["by"] == "teacher"]
    assert by_teacher == [{"by": "teacher", "key": str(s.teacher), "trials": 2, "decided": 2, "converted": 1,
                           "rate": "0.5000"}]


def test_not_interested_loses_the_lead_with_a_reason(app, tenant, clock):
    s = school(tenant)
    lead = s.student("13800000311")
    lesson = ok(s.lesson("2026-03-02T09:00:00+08:00", "2026-03-02T10:00:00+08:00"), 201)
    trial = ok(s.post("/trials", {"lead_id": lead, "lesson_id": lesson["id"]}), 201)
    ok(s.post(f"/trials/{trial['id']}/outcome", {"outcome": "not_interested"}))
    got = ok(tenant.get(f"/api/v1/leads/{lead}"))
    assert got["stage"] == "lost" and "not interested" in got["lost_reason"]


def test_refund_of_remaining_hours_is_a_core_refund_of_the_deal_and_happens_once(app, tenant, clock):
    s = school(tenant, hours="3", gift="1", price="100.00")
    lead = s.student("13800000321")
    account = s.buy(lead)
    assert account["unit_price"] == "33.33"
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead, "account_id": account["id"]}), 201)
    for hour in (7, 8):  # the gift hour, then one purchased hour: 33.33 recognised
        lesson = ok(s.lesson(f"2026-03-02T{hour:02d}:00:00+08:00", f"2026-03-02T{hour:02d}:50:00+08:00"), 201)
        ok(s.post(f"/lessons/{lesson['id']}/attendance", {"marks": [{"lead_id": lead, "status": "present"}]}))
    out = ok(s.post(f"/accounts/{account['id']}/refund", {"reason": "moving away"}))
    assert out["amount"] == "66.67"  # two purchased hours, with the rounding residue; the gift hour is worth 0
    assert out["account"]["status"] == "refunded" and out["account"]["remaining_value"] == "0.00"
    deal = ok(tenant.get(f"/api/v1/deals/{account['deal_id']}"))
    assert deal["refunded"] == "66.67"
    again = s.post(f"/accounts/{account['id']}/refund", {"reason": "twice"})
    assert again.status_code == 409
    assert ok(tenant.get(f"/api/v1/deals/{account['deal_id']}"))["refunded"] == "66.67"
    acc = ok(s.get(f"/accounts/{account['id']}"))
    assert Decimal(acc["recognised"]) + Decimal(acc["refunded"]) == Decimal(acc["paid"])


def test_a_deal_recorded_in_the_crm_naming_a_package_opens_an_account_once(app, tenant, clock):
    s = school(tenant)
    lead = s.student("13800000331")
    product = ok(s.get("/packages"))[0]["product"]
    deal = ok(tenant.post(f"/api/v1/leads/{lead}/deals", json={"amount": "3600.00", "product": product}), 201)
    accounts = ok(s.get("/accounts", query_string={"lead_id": lead}))["items"]
    assert len(accounts) == 1 and accounts[0]["deal_id"] == deal["id"] and accounts[0]["paid"] == "3600.00"
    by_name = ok(tenant.post(f"/api/v1/leads/{lead}/deals", json={"amount": "4000.00", "product": "Maths 20h"}), 201)
    assert {a["deal_id"] for a in ok(s.get("/accounts", query_string={"lead_id": lead}))["items"]} == {
        deal["id"], by_name["id"]}
    ok(tenant.post(f"/api/v1/leads/{lead}/deals", json={"amount": "10.00", "product": "a T-shirt"}), 201)
    assert len(ok(s.get("/accounts", query_string={"lead_id": lead}))["items"]) == 2


def test_switched_off_routes_404_no_accounts_on_deals_no_jobs(app, tenant, other_tenant, clock):
    s = school(tenant, {"auto_consume": True})
    product = ok(s.get("/packages"))[0]["product"]
    off = other_tenant  # never switched on
    for path in ("/campuses", "/lessons", "/accounts", "/reports/trials"):
        r = off.get(BASE + path)
        assert r.status_code == 404 and "scheduling" in r.get_json()["message"]
    lead = off.lead("13800000341")
    ok(off.post(f"/api/v1/leads/{lead['id']}/deals", json={"amount": "100.00", "product": product}), 201)
    assert run_periodic(off.runtime, "scheduling", "consume", off.id) == {off.id: "skipped"}
    with tenant_context(off.runtime, off.id) as ctx:
        assert ctx.session.scalar(select(func.count()).select_from(Account)) == 0
    # switched off later: the tenant's data stays, its routes and jobs stop
    lesson = ok(s.lesson("2026-03-02T08:00:00+08:00", "2026-03-02T09:00:00+08:00"), 201)
    student = s.student("13800000342")
    s.buy(student)
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": student}), 201)
    ok(tenant.put("/api/v1/plugins/scheduling", json={"enabled": False}))
    assert s.get(f"/lessons/{lesson['id']}").status_code == 404
    clock.advance(days=1)
    assert run_periodic(tenant.runtime, "scheduling", "consume", tenant.id) == {tenant.id: "skipped"}
    ok(tenant.post(f"/api/v1/leads/{student}/deals", json={"amount": "100.00", "product": product}), 201)
    with tenant_context(tenant.runtime, tenant.id) as ctx:
        assert ctx.session.scalar(select(func.count()).select_from(Attendance)) == 0
        assert ctx.session.scalar(select(func.count()).select_from(Account)) == 1  # the one bought while on


def test_accounts_and_lessons_of_another_tenant_are_not_found(app, tenant, other_tenant, clock):
    s, o = school(tenant), school(other_tenant)
    lead = s.student("13800000351")
    account = s.buy(lead)
    assert o.get(f"/accounts/{account['id']}").status_code == 404
    assert o.post(f"/accounts/{account['id']}/refund", {"reason": "x"}).status_code == 404
    r = o.post("/accounts", {"lead_id": lead, "package_id": o.package})
    assert r.status_code == 422 and "lead_id" in r.get_json()["errors"]["json"]
    r = o.post(f"/classes/{o.klass}/students", {"lead_id": lead})
    assert r.status_code == 404
