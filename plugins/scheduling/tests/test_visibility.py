"""A rep acts only on her own leads' students (the core's ``visible_leads``); a lesson's teacher marks any of its students.

``rep`` teaches the school's class (see :func:`.helpers.school`); ``rep2`` is
a sales rep who owns one student (``mine``) and not the other (``theirs``,
owned by ``rep``).
"""

from __future__ import annotations

from sqlalchemy import func, select

from pelago.plugin import tenant_context
from pelago.plugins.scheduling.models import Account, Attendance, Trial

from .helpers import ok, school


def _setup(tenant):
    s = school(tenant)
    mine = s.student("13800000701", owner_id=tenant.users["rep2"])
    theirs = s.student("13800000702", owner_id=tenant.users["rep"])
    accounts = {lead: s.buy(lead)["id"] for lead in (mine, theirs)}
    for lead in (mine, theirs):
        ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead, "account_id": accounts[lead]}), 201)
    lesson = int(ok(s.lesson("2026-03-02T08:00:00+08:00", "2026-03-02T09:00:00+08:00"), 201)["id"])
    return s, mine, theirs, accounts, lesson


def _lead_error(r, *path):
    assert r.status_code == 422, r.get_json()
    errors = r.get_json()["errors"]["json"]
    for key in path:
        errors = errors[key]
    assert "lead_id" in errors
    return errors


def test_a_rep_cannot_buy_for_read_or_refund_another_reps_student(app, tenant):
    s, mine, theirs, accounts, _ = _setup(tenant)
    _lead_error(s.post("/accounts", {"lead_id": theirs, "package_id": s.package}, "rep2"))
    with tenant_context(tenant.runtime, tenant.id) as ctx:
        assert ctx.session.scalar(select(func.count()).select_from(Account)) == 2  # nothing sold
    ok(s.post("/accounts", {"lead_id": mine, "package_id": s.package}, "rep2"), 201)
    assert s.get(f"/accounts/{accounts[theirs]}", "rep2").status_code == 404
    assert ok(s.get(f"/accounts/{accounts[mine]}", "rep2"))["lead_id"] == mine
    listed = ok(s.get("/accounts", "rep2"))["items"]
    assert {a["lead_id"] for a in listed} == {mine}
    assert ok(s.get("/accounts", "rep2", query_string={"lead_id": theirs}))["items"] == []
    assert {a["lead_id"] for a in ok(s.get("/accounts", "manager"))["items"]} == {mine, theirs}  # managers see all


def test_a_rep_cannot_ask_leave_or_mark_another_reps_student_but_the_teacher_marks_all(app, tenant, clock):
    s, mine, theirs, _, lesson = _setup(tenant)
    _lead_error(s.post(f"/lessons/{lesson}/leave", {"lead_id": theirs}, "rep2"))
    errors = _lead_error(s.post(f"/lessons/{lesson}/attendance",
                                {"marks": [{"lead_id": mine, "status": "present"},
                                           {"lead_id": theirs, "status": "present"}]}, "rep2"), "marks", "1")
    assert "teacher" in errors["lead_id"][0]
    with tenant_context(tenant.runtime, tenant.id) as ctx:
        assert ctx.session.scalar(select(func.count()).select_from(Attendance)) == 0  # the whole batch refused
    ok(s.post(f"/lessons/{lesson}/attendance", {"marks": [{"lead_id": mine, "status": "present"}]}, "rep2"))
    # the lesson's teacher (rep) marks every student of it, whoever owns them
    ok(s.post(f"/lessons/{lesson}/attendance", {"marks": [{"lead_id": mine, "status": "late"},
                                                           {"lead_id": theirs, "status": "present"}]}, "rep"))
    ok(s.post(f"/lessons/{lesson}/leave", {"lead_id": mine}, "rep2"))


def test_a_rep_sees_and_books_trials_and_slots_of_her_own_leads_only(app, tenant, clock):
    s, mine, theirs, _, lesson = _setup(tenant)
    prospect = s.student("13800000703", owner_id=tenant.users["rep"])
    _lead_error(s.post("/trials", {"lead_id": prospect, "lesson_id": lesson}, "rep2"))
    with tenant_context(tenant.runtime, tenant.id) as ctx:
        assert ctx.session.scalar(select(func.count()).select_from(Trial)) == 0
    own = s.student("13800000704", owner_id=tenant.users["rep2"])
    ok(s.post("/trials", {"lead_id": own, "lesson_id": lesson}, "rep2"), 201)
    other = ok(s.post("/trials", {"lead_id": prospect, "lesson_id": lesson}), 201)  # booked by the admin
    assert {t["lead_id"] for t in ok(s.get("/trials", "rep2"))["items"]} == {own}
    assert s.post(f"/trials/{other['id']}/outcome", {"outcome": "no_show"}, "rep2").status_code == 404
    ok(s.post(f"/trials/{other['id']}/outcome", {"outcome": "no_show"}, "rep"))  # the lesson's teacher
    slots = {"teacher_id": s.teacher, "campus_id": s.campus, "date_from": "2026-03-03", "date_to": "2026-03-04"}
    _lead_error(s.get("/free-slots", "rep2", query_string={**slots, "lead_id": theirs}))
    ok(s.get("/free-slots", "rep2", query_string={**slots, "lead_id": mine}))
    assert ok(s.get("/lessons", "rep2", query_string={"lead_id": theirs}))["items"] == []
    assert [x["id"] for x in ok(s.get("/lessons", "rep2", query_string={"lead_id": mine}))["items"]] == [lesson]


def test_enrolment_transfer_and_makeups_need_the_lead_visible(app, tenant, clock):
    s, mine, theirs, _, lesson = _setup(tenant)
    other_class = s.new_class("Maths G6")
    assert s.post(f"/classes/{s.klass}/transfer", {"lead_id": theirs, "to_class_id": other_class},
                  "rep2").status_code == 403  # managers only, as before
    assert s.post("/makeups", {"lead_id": theirs, "missed_lesson_id": lesson, "lesson_id": lesson},
                  "rep2").status_code == 403
    stranger = s.t.post("/api/v1/leads", "admin", json={"name": "x", "phone": "13800000705"}).get_json()["id"]
    assert s.post(f"/classes/{other_class}/students", {"lead_id": stranger + 10_000}, "manager").status_code == 404
    ok(s.post(f"/classes/{s.klass}/transfer", {"lead_id": theirs, "to_class_id": other_class}, "manager"))
