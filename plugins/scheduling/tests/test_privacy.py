"""``scheduling``'s part of privacy requests: its data in an export; after an erasure, out of the schedule from now on."""

from __future__ import annotations

from sqlalchemy import func, select

from pelago.plugin import tenant_context
from pelago.plugins.scheduling.models import Account, Attendance, Busy, Enrolment, Entry, Participant

from .helpers import ok, school

PHONE = "13800000801"


def _student(s, clock):
    """A student with an account, enrolled, marked present at today's 09:00 lesson, a trial seat tomorrow, a feed."""
    lead = s.student(PHONE)
    account = s.buy(lead)
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead, "account_id": account["id"]}), 201)
    past = ok(s.lesson("2026-03-02T09:00:00+08:00", "2026-03-02T10:00:00+08:00"), 201)["id"]
    future = ok(s.lesson("2026-03-03T09:00:00+08:00", "2026-03-03T10:00:00+08:00"), 201)["id"]
    trial_class = s.new_class("Trial", trial=True, kind="one_on_one", capacity=1)
    trial = ok(s.post("/trials", {"lead_id": lead, "class_id": trial_class, "starts_at": "2026-03-04T09:00:00+08:00",
                                  "ends_at": "2026-03-04T10:00:00+08:00"}), 201)
    ok(s.post(f"/lessons/{past}/attendance", {"marks": [{"lead_id": lead, "status": "present"}]}))
    feed = ok(s.post(f"/students/{lead}/feed", {}), 201)
    return lead, account, past, future, trial, feed


def test_an_export_carries_the_students_accounts_ledger_attendance_trials_and_feeds(app, tenant, clock):
    s = school(tenant)
    lead, account, past, future, trial, feed = _student(s, clock)
    r = tenant.post("/api/v1/privacy/exports", json={"phone": PHONE})
    assert r.status_code == 200, r.get_json()
    part = r.get_json()["plugins"]["scheduling"]
    assert [x["lead_id"] for x in part["students"]] == [lead]
    assert [(e["class_id"], e["account_id"]) for e in part["enrolments"]] == [(s.klass, account["id"])]
    [acc] = part["accounts"]
    assert acc["id"] == account["id"] and [e["kind"] for e in acc["ledger"]] == ["purchase", "consume"]
    assert [(a["lesson_id"], a["status"]) for a in part["attendance"]] == [(past, "present")]
    assert [(t["id"], t["outcome"]) for t in part["trials"]] == [(trial["id"], None)]
    assert [x["role"] for x in part["seats"]] == ["trial"]
    assert [(f["id"], f["revoked_at"]) for f in part["feeds"]] == [(feed["id"], None)]
    assert feed["path"].rsplit("/", 1)[1].removesuffix(".ics") not in str(part)  # never the token
    other = tenant.lead("13800000802")
    r = tenant.post("/api/v1/privacy/exports", json={"phone": other["phone"]})
    assert "scheduling" not in r.get_json()["plugins"]  # nothing held: no part


def test_an_erasure_takes_the_student_out_of_the_schedule_and_keeps_the_records(app, tenant, clock):
    s = school(tenant)
    bystander = s.student("13800000803")
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": bystander}), 201)
    lead, account, past, future, trial, feed = _student(s, clock)
    ok(tenant.put("/api/v1/plugins/scheduling", json={"enabled": False}))  # reaches the plugin switched off too
    r = tenant.post("/api/v1/privacy/erasures", json={"phone": PHONE, "reason": "the person asked"})
    assert r.status_code == 200 and r.get_json()["lead_ids"] == [lead], r.get_json()
    ok(tenant.put("/api/v1/plugins/scheduling", json={"enabled": True}))
    assert app.test_client().get(feed["path"]).status_code == 404  # the feed is revoked
    with tenant_context(tenant.runtime, tenant.id) as ctx:
        count = lambda model, *where: ctx.session.scalar(select(func.count()).select_from(model).where(*where))  # noqa: E731
        assert count(Enrolment, Enrolment.lead_id == lead) == 0
        assert count(Participant, Participant.lead_id == lead) == 0
        assert count(Busy, Busy.resource == "student", Busy.resource_id == lead, Busy.lesson_id != past) == 0
        # what happened stays: the past lesson's seat, the roll-call, the account and its ledger
        assert count(Busy, Busy.resource == "student", Busy.resource_id == lead, Busy.lesson_id == past) == 1
        assert count(Attendance, Attendance.lead_id == lead) == 1
        assert count(Account, Account.lead_id == lead) == 1
        assert count(Entry, Entry.account_id == account["id"]) == 2
        # the bystander keeps her place
        assert count(Enrolment, Enrolment.lead_id == bystander) == 1
        assert count(Busy, Busy.resource == "student", Busy.resource_id == bystander, Busy.lesson_id == future) == 1
    lesson = ok(s.get(f"/lessons/{future}"))
    assert lead not in lesson["students"] and bystander in lesson["students"]
    deliveries = tenant.get("/api/v1/deliveries", query_string={"plugin": "scheduling"}).get_json()["items"]
    assert [d["state"] for d in deliveries if d["event"] == "person_erased"] == ["delivered"]
