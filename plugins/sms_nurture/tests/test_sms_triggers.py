"""Enrolment triggers and every exit condition, through the core's own API and events; switched off for a tenant."""

from __future__ import annotations

import io

from pelago.plugin import Event, tenant_context
from pelago.plugins.sms_nurture import hooks
from pelago.testing import run_periodic

from .sms_helpers import (
    count_rows,
    dispatch,
    enrol,
    enrolments,
    lead,
    messages,
    sequence,
    sms_tenant,
    stats,
)
from .sms_helpers import (
    phone as phone_number,
)


def scan(t):
    assert run_periodic(t.runtime, "sms_nurture", "scan", t.id) == {t.id: "done"}


def test_a_lead_not_contacted_within_n_hours_is_enrolled_once(app, clock):
    t = sms_tenant(app)
    seq = sequence(t, 0, trigger="not_contacted", trigger_hours=24)
    quiet, called = lead(t), lead(t)
    assert t.post(f"/api/v1/leads/{called['id']}/activities", json={"kind": "call", "note": "接通"}).status_code == 201
    clock.advance(hours=23)
    scan(t)
    assert enrolments(t, sequence_id=seq["id"]) == []
    clock.advance(hours=1)
    scan(t)
    scan(t)
    [e] = enrolments(t, sequence_id=seq["id"])
    assert (e["lead_id"], e["pass"], e["source"]) == (quiet["id"], "created", "not_contacted")
    dispatch(t)
    assert [m["status"] for m in messages(t, lead_id=quiet["id"])] == ["sent"]


def test_a_lead_released_to_the_pool_is_enrolled_per_release_and_exits_when_claimed(app):
    t = sms_tenant(app)
    assert t.put("/api/v1/plugins/pool", json={"enabled": True}).status_code == 200
    sequence(t, 0, 60, trigger="pool_released")
    a = lead(t, owner_id=None)
    assert t.post(f"/api/v1/leads/{a['id']}/assign", json={"user_id": t.users["rep"]}).status_code == 200
    assert t.post(f"/api/v1/leads/{a['id']}/assign", json={"user_id": None}).status_code == 200
    [e] = enrolments(t, lead_id=a["id"])
    assert e["status"] == "active" and e["pass"].startswith("released:")
    dispatch(t)
    r = t.post("/api/v1/pool/claim", "rep2", json={"lead_ids": [a["id"]]})
    assert r.status_code == 200, r.get_json()
    [e] = enrolments(t, lead_id=a["id"])
    assert (e["status"], e["reason"]) == ("exited", "assigned")
    assert [m["status"] for m in messages(t, lead_id=a["id"])] == ["sent"]
    assert t.post(f"/api/v1/leads/{a['id']}/assign", json={"user_id": None}).status_code == 200
    assert [e["status"] for e in enrolments(t, lead_id=a["id"])] == ["exited", "active"]  # a new pass


def test_about_to_be_recycled_enrols_through_the_pools_hook(app):
    t = sms_tenant(app)
    seq = sequence(t, 0, trigger="pool_recycle_due")
    a = lead(t)
    event = Event(id=1, name="pool_recycle_due", tenant_id=t.id, created_at=t.runtime.clock(), actor_id=None,
                  items=({"lead_id": a["id"], "owner_id": None, "pool_id": 1, "rule": "no_followup",
                          "due_at": "2026-03-05T00:00:00+00:00", "days_left": 3},))
    with tenant_context(t.runtime, t.id) as ctx:
        for _ in range(2):  # delivered at least once: the same event twice enrols once
            hooks.pool_recycle_due(ctx=ctx, event=event)
    [e] = enrolments(t, sequence_id=seq["id"])
    assert e["pass"] == "due:2026-03-05T00:00:00+00:00"


def test_a_lead_lost_with_a_listed_reason_is_enrolled(app):
    t = sms_tenant(app)
    seq = sequence(t, 0, trigger="lost", trigger_reasons=["预算不足"])
    a, b = lead(t), lead(t)
    assert t.post(f"/api/v1/leads/{a['id']}/stage", json={"stage": "lost", "lost_reason": "预算不足"}).status_code == 200
    assert t.post(f"/api/v1/leads/{b['id']}/stage", json={"stage": "lost", "lost_reason": "已报别家"}).status_code == 200
    assert [e["lead_id"] for e in enrolments(t, sequence_id=seq["id"])] == [a["id"]]


def test_a_reps_activity_ends_the_enrolment_and_our_own_sms_activities_do_not(app, clock):
    t = sms_tenant(app, daily_cap=5)
    seq = sequence(t, 0, 60)
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    dispatch(t)  # logs an automatic sms activity
    assert enrolments(t, lead_id=a["id"])[0]["status"] == "active"
    assert t.post(f"/api/v1/leads/{a['id']}/activities", json={"kind": "call", "note": "回访"}).status_code == 201
    [e] = enrolments(t, lead_id=a["id"])
    assert (e["status"], e["reason"]) == ("exited", "activity")
    clock.advance(hours=1)
    dispatch(t)
    assert [m["status"] for m in messages(t, lead_id=a["id"])] == ["sent"]


def test_a_deal_won_ends_it_as_converted(app):
    t = sms_tenant(app)
    seq = sequence(t, 60)
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    r = t.post(f"/api/v1/leads/{a['id']}/deals", json={"amount": "4980.00", "product": "48 课时"})
    assert r.status_code == 201, r.get_json()
    assert enrolments(t, lead_id=a["id"])[0]["reason"] == "converted"
    assert stats(t, seq["id"])["converted"] == 1


def test_enrolment_by_filter_and_by_csv(app):
    t = sms_tenant(app)
    seq = sequence(t, 60)
    a, b = lead(t, source="douyin"), lead(t, source="baidu")
    nophone = t.lead(None, email="x@example.com")
    r = t.post(f"/api/v1/sms_nurture/sequences/{seq['id']}/enrolments", json={"filter": {"source": "douyin"}})
    assert r.get_json() == {"enrolled": [a["id"]], "refused": {}}
    csv = f"phone,name\n{b['phone'].removeprefix('+86')},x\n".encode()
    r = t.post(f"/api/v1/sms_nurture/sequences/{seq['id']}/enrolments/csv",
               data={"file": (io.BytesIO(csv), "leads.csv"), "pass": "march"}, content_type="multipart/form-data")
    assert r.status_code == 200 and r.get_json()["enrolled"] == [b["id"]]
    r = t.post(f"/api/v1/sms_nurture/sequences/{seq['id']}/enrolments/csv",
               data={"file": (io.BytesIO(f"lead_id\n{nophone['id']}\n".encode()), "x.csv")},
               content_type="multipart/form-data")
    assert r.get_json()["refused"] == {str(nophone["id"]): "the lead has no phone"}
    r = t.post(f"/api/v1/sms_nurture/sequences/{seq['id']}/enrolments/csv",
               data={"file": (io.BytesIO(b"name\nx\n"), "x.csv")}, content_type="multipart/form-data")
    assert r.status_code == 422
    assert count_rows(t, "sms_nurture_enrolment") == 2


def test_switched_off_nothing_is_enrolled_or_sent_and_routes_404(app, clock):
    t = sms_tenant(app)
    seq = sequence(t, 0, trigger="lost")
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    assert t.put("/api/v1/plugins/sms_nurture", json={"enabled": False}).status_code == 200
    b = t.lead(phone_number())
    assert t.post(f"/api/v1/leads/{b['id']}/stage", json={"stage": "lost", "lost_reason": "x"}).status_code == 200
    assert run_periodic(t.runtime, "sms_nurture", "dispatch", t.id) == {t.id: "skipped"}
    assert t.get("/api/v1/sms_nurture/sequences").status_code == 404
    assert count_rows(t, "sms_nurture_enrolment") == 1 and count_rows(t, "sms_nurture_message") == 0
    assert t.put("/api/v1/plugins/sms_nurture", json={"enabled": True}).status_code == 200
    assert count_rows(t, "sms_nurture_enrolment") == 1  # the lost lead was not enrolled while off
