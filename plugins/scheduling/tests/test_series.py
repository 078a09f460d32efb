"""Series: expansion in the campus's time, Chinese holidays and 调休, unknown years, edits by scope."""

from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import func, select

from pelago.plugin import tenant_context
from pelago.plugins.scheduling.models import Lesson, Series
from pelago.plugins.scheduling.recurrence import day_kind

from .helpers import ok, school

TERM = {"rrule": "FREQ=WEEKLY;BYDAY=TU,SA;COUNT=10", "start": "2026-09-15T09:00", "duration_minutes": 90}


def test_the_calendar_knows_national_day_and_its_make_up_saturday_and_not_next_year():
    assert day_kind(date(2026, 10, 1)) == ("holiday", "National Day")
    assert day_kind(date(2026, 10, 10)) == ("makeup_workday", "National Day")  # a Saturday worked (调休)
    assert day_kind(date(2026, 10, 17)) == ("weekend", None)
    assert day_kind(date(2026, 10, 13)) == ("workday", None)
    assert day_kind(date(2027, 1, 5)) == ("unknown", None)  # never assumed a workday


def test_a_term_over_national_day_skips_holidays_and_the_make_up_saturday(app, tenant):
    s = school(tenant)
    preview = ok(s.post("/series/preview", {"class_id": s.klass, **TERM}))
    actions = {o["local_start"][:10]: (o["action"], o["day"]) for o in preview["occurrences"]}
    assert actions["2026-09-26"] == ("skip", "holiday")  # Mid-autumn Festival, a Saturday
    assert actions["2026-10-03"] == ("skip", "holiday")
    assert actions["2026-10-06"] == ("skip", "holiday")  # a Tuesday of the Golden Week
    assert actions["2026-10-10"] == ("skip", "makeup_workday")  # 调休: the children are at school
    assert actions["2026-10-13"] == ("keep", "workday")
    assert (preview["kept"], preview["skipped"], preview["unknown_days"]) == (6, 4, 0)
    with tenant_context(tenant.runtime, tenant.id) as ctx:
        assert ctx.session.scalar(select(func.count()).select_from(Lesson)) == 0  # a preview writes nothing
    made = ok(s.post("/series", {"class_id": s.klass, **TERM}), 201)
    assert made["lessons"] == 6 and len(made["skipped"]) == 4
    lessons = ok(s.get("/lessons", query_string={"class_id": s.klass, "limit": 50}))["items"]
    starts = sorted(x["starts_at"] for x in lessons)
    assert starts[0] == "2026-09-15T09:00:00+08:00" and starts[-1] == "2026-10-17T09:00:00+08:00"
    assert all(x["recurrence_id"] == x["starts_at"] for x in lessons)
    # the same slots again: one 409 naming a lesson, and nothing of the second series written
    again = s.post("/series", {"class_id": s.new_class("Maths G6", room=s.room), **TERM})
    assert again.status_code == 409 and again.get_json()["errors"]["conflicts"][0]["other_lesson_id"]
    with tenant_context(tenant.runtime, tenant.id) as ctx:
        assert ctx.session.scalar(select(func.count()).select_from(Series)) == 1


def test_a_year_not_yet_announced_is_unknown_and_refused_unless_asked(app, tenant):
    s = school(tenant)
    winter = {"rrule": "FREQ=WEEKLY;BYDAY=SA;COUNT=4", "start": "2026-12-19T09:00", "duration_minutes": 60}
    preview = ok(s.post("/series/preview", {"class_id": s.klass, **winter}))
    assert [o["day"] for o in preview["occurrences"]] == ["weekend", "weekend", "unknown", "unknown"]
    assert preview["unknown_days"] == 2
    r = s.post("/series", {"class_id": s.klass, **winter})
    assert r.status_code == 422 and "2027-01-02" in r.get_json()["errors"]["json"]["unknown_days"][0]
    made = ok(s.post("/series", {"class_id": s.klass, **winter, "unknown_days": "keep"}), 201)
    assert made["lessons"] == 4


def test_wall_clock_time_is_kept_across_a_daylight_saving_change(app, tenant):
    s = school(tenant)
    ny = ok(s.post("/campuses", {"name": "Manhattan", "timezone": "America/New_York"}), 201)["id"]
    k = ok(s.post("/classes", {"name": "Maths NY", "kind": "class", "campus_id": ny, "course_id": s.course,
                               "teacher_id": tenant.users["rep2"], "capacity": 20, "online": True}), 201)["id"]
    ok(s.post("/series", {"class_id": k, "rrule": "FREQ=WEEKLY;BYDAY=TH;COUNT=2", "start": "2026-10-29T18:00",
                          "duration_minutes": 60, "holidays": "keep", "makeup_workdays": "keep"}), 201)
    utc = sorted(datetime.fromisoformat(x["starts_at"]).astimezone(timezone.utc)
                 for x in ok(s.get("/lessons", query_string={"class_id": k}))["items"])
    assert [u.hour for u in utc] == [22, 23]  # 18:00 EDT, then 18:00 EST


def test_edit_this_following_and_all_and_a_new_teacher_for_the_future_only(app, tenant, clock):
    s = school(tenant)
    lead = s.student("13800000031")
    s.buy(lead)
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead}), 201)
    ok(s.post("/series", {"class_id": s.klass, "rrule": "FREQ=WEEKLY;BYDAY=MO;COUNT=7",
                          "start": "2026-03-02T18:00", "duration_minutes": 60}), 201)
    lessons = sorted(ok(s.get("/lessons", query_string={"class_id": s.klass}))["items"], key=lambda x: x["starts_at"])
    # the first lesson has taken place: roll-call, then the clock moves on
    clock.advance(days=(datetime(2026, 3, 2, 11, tzinfo=timezone.utc) - clock()).total_seconds() / 86400)
    ok(s.post(f"/lessons/{lessons[0]['id']}/attendance", {"marks": [{"lead_id": lead, "status": "present"}]}))
    # this one: an hour later, with a reason; its recurrence id stays
    one = ok(s.t.patch(f"/api/v1/scheduling/lessons/{lessons[2]['id']}",
                       json={"scope": "this", "starts_at": "2026-03-16T19:00:00+08:00", "reason": "exam week"}))
    assert one["lessons"][0]["starts_at"] == "2026-03-16T19:00:00+08:00"
    assert one["lessons"][0]["recurrence_id"] == lessons[2]["recurrence_id"]
    # this and following from the 4th: half an hour earlier
    following = ok(s.t.patch(f"/api/v1/scheduling/lessons/{lessons[3]['id']}",
                             json={"scope": "following", "starts_at": "2026-03-23T17:30:00+08:00"}))
    assert [x["starts_at"][11:16] for x in following["lessons"]] == ["17:30", "17:30", "17:30"]
    # all future: a new teacher; the lesson that took place keeps its teacher
    new = tenant.users["rep2"]
    everything = ok(s.t.patch(f"/api/v1/scheduling/lessons/{lessons[1]['id']}",
                              json={"scope": "all", "teacher_id": new}))
    assert len(everything["lessons"]) == 5 and {x["teacher_id"] for x in everything["lessons"]} == {new}
    assert ok(s.get(f"/lessons/{lessons[0]['id']}"))["teacher_id"] == s.teacher
    # a clash on edit: 409, and nothing moved
    other = s.new_class("Physics", teacher=new, room=None)
    blocker = ok(s.lesson("2026-04-13T20:00:00+08:00", "2026-04-13T21:00:00+08:00", klass=other), 201)
    r = s.t.patch(f"/api/v1/scheduling/lessons/{lessons[5]['id']}",
                  json={"scope": "this", "starts_at": "2026-04-13T20:30:00+08:00"})
    assert r.status_code == 409 and r.get_json()["errors"]["conflicts"][0]["other_lesson_id"] == blocker["id"]
    assert ok(s.get(f"/lessons/{lessons[5]['id']}"))["starts_at"] == "2026-04-13T17:30:00+08:00"


def test_free_slots_avoid_the_teacher_the_student_and_the_room(app, tenant, clock):
    s = school(tenant)
    lead = s.student("13800000041")
    ok(s.lesson("2026-03-10T09:00:00+08:00", "2026-03-10T10:00:00+08:00"), 201)
    slots = ok(s.get("/free-slots", query_string={
        "teacher_id": s.teacher, "lead_id": lead, "room_id": s.room, "campus_id": s.campus,
        "date_from": "2026-03-10", "date_to": "2026-03-10", "duration_minutes": 60, "day_start": "08:00",
        "day_end": "12:00", "step_minutes": 30}))["items"]
    assert [x["starts_at"][11:16] for x in slots] == ["08:00", "10:00", "10:30", "11:00"]


def test_bad_input_is_refused_with_field_errors_and_nothing_written(app, tenant):
    s = school(tenant)
    cases = [
        ("/series", {"class_id": s.klass, "rrule": "FREQ=WEEKLY;BYDAY=MO", "start": "2026-09-07T09:00",
                     "duration_minutes": 60}, "rrule"),
        ("/series", {"class_id": s.klass, "rrule": "FREQ=DAILY;COUNT=5000", "start": "2026-09-07T09:00",
                     "duration_minutes": 60}, "rrule"),
        ("/series", {"class_id": s.klass, "rrule": "FREQ=WEEKLY;COUNT=3", "start": "2026-09-07 09:00",
                     "duration_minutes": 60}, "start"),
        ("/lessons", {"class_id": s.klass, "starts_at": "2026-09-07T10:00:00+08:00",
                      "ends_at": "2026-09-07T09:00:00+08:00"}, "ends_at"),
        ("/lessons", {"class_id": s.klass, "starts_at": "2026-09-07T09:00:00",
                      "ends_at": "2026-09-07T10:00:00+08:00"}, "starts_at"),
        ("/packages", {"course_id": s.course, "name": "float", "hours": 20.5, "price": "100.00",
                       "validity_days": 30}, "hours"),
        ("/packages", {"course_id": s.course, "name": "float price", "hours": "20", "price": 100.0,
                       "validity_days": 30}, "price"),
        ("/classes", {"name": "Big", "kind": "class", "campus_id": s.campus, "course_id": s.course,
                      "teacher_id": s.teacher, "room_id": s.room, "capacity": 40}, "capacity"),
        ("/campuses", {"name": "Nowhere", "timezone": "Mars/Olympus"}, "timezone"),
        ("/series", {"class_id": s.klass, "rrule": "FREQ=WEEKLY;COUNT=3", "start": "2026-02-30T09:00",
                     "duration_minutes": 60}, "start"),
    ]
    for path, body, field in cases:
        r = s.post(path, body)
        assert r.status_code == 422, (path, body, r.get_json())
        assert field in r.get_json()["errors"]["json"], (field, r.get_json())
    # a lesson in a room over its capacity: a small room for a class of 8 enrolled students
    small = ok(s.post("/rooms", {"campus_id": s.campus, "name": "Tiny", "capacity": 2}), 201)["id"]
    for i in range(3):
        ok(s.post(f"/classes/{s.klass}/students", {"lead_id": s.student(f"1380000005{i}")}), 201)
    r = s.lesson("2026-09-07T09:00:00+08:00", "2026-09-07T10:00:00+08:00", room=small)
    assert r.status_code == 422 and "room_id" in r.get_json()["errors"]["json"]
    with tenant_context(tenant.runtime, tenant.id) as ctx:
        assert ctx.session.scalar(select(func.count()).select_from(Lesson)) == 0
        assert ctx.session.scalar(select(func.count()).select_from(Series)) == 0


def test_the_policy_refuses_late_lessons_long_online_ones_and_big_prepayments(app, tenant):
    s = school(tenant, {"policy": {"enabled": True}})
    r = s.lesson("2026-09-07T20:30:00+08:00", "2026-09-07T21:30:00+08:00")
    assert r.status_code == 422 and "latest_end" in r.get_json()["errors"]["json"]["policy"][0]
    online = s.new_class("Online", room=None, online=True)
    r = s.lesson("2026-09-07T18:00:00+08:00", "2026-09-07T18:45:00+08:00", klass=online)
    assert r.status_code == 422 and "online_max_minutes" in r.get_json()["errors"]["json"]["policy"][0]
    ok(s.lesson("2026-09-07T18:00:00+08:00", "2026-09-07T18:30:00+08:00", klass=online), 201)
    r = s.lesson("2026-09-07T18:35:00+08:00", "2026-09-07T19:00:00+08:00", klass=online)  # a 5-minute break
    assert r.status_code == 422 and "online_break_minutes" in r.get_json()["errors"]["json"]["policy"][0]
    ok(s.lesson("2026-09-07T18:40:00+08:00", "2026-09-07T19:10:00+08:00", klass=online), 201)
    r = s.lesson("2026-10-01T09:00:00+08:00", "2026-10-01T10:00:00+08:00")
    assert r.status_code == 422 and "no_subject_on_holidays" in r.get_json()["errors"]["json"]["policy"][0]
    big = ok(s.post("/packages", {"course_id": s.course, "name": "Maths 96h", "hours": "96", "price": "9600.00",
                                  "validity_days": 365}), 201)["id"]
    r = s.post("/accounts", {"lead_id": s.student("13800000061"), "package_id": big})
    assert r.status_code == 422 and "max_prepaid_hours" in r.get_json()["errors"]["json"]["policy"][0]
    ok(s.lesson("2026-09-07T19:30:00+08:00", "2026-09-07T20:30:00+08:00"), 201)  # within the rules


def test_the_policy_is_off_by_default(app, tenant):
    s = school(tenant)
    ok(s.lesson("2026-09-07T20:30:00+08:00", "2026-09-07T21:30:00+08:00"), 201)
