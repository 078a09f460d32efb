"""Conflicts on half-open intervals: teacher, room and student; and on PostgreSQL, under 16 threads."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError

from pelago.plugin import tenant_context
from pelago.plugins.scheduling import booking
from pelago.plugins.scheduling.models import Busy, Lesson

from .helpers import ok, school

CST = timezone(timedelta(hours=8))


def at(day: int, hour: int, minute: int = 0) -> str:
    return datetime(2026, 9, day, hour, minute, tzinfo=CST).isoformat()


def test_back_to_back_is_fine_and_an_overlap_names_the_other_lesson(app, tenant):
    s = school(tenant)
    first = ok(s.lesson(at(7, 9), at(7, 10)), 201)
    ok(s.lesson(at(7, 10), at(7, 11)), 201)  # starts when the first ends: [9, 10) and [10, 11)
    other = s.new_class("Maths G6", room=None)  # same teacher, no room
    r = s.lesson(at(7, 9, 30), at(7, 10, 30), klass=other)
    assert r.status_code == 409
    body = r.get_json()
    assert str(first["id"]) in body["message"] and "teacher" in body["message"]
    assert body["errors"]["conflicts"][0]["other_lesson_id"] == first["id"]


def test_the_room_and_a_student_are_resources_too(app, tenant):
    s = school(tenant)
    lead = s.student("13800000001")
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead}), 201)
    ok(s.lesson(at(8, 9), at(8, 10)), 201)
    by_room = s.new_class("Physics", teacher=tenant.users["rep2"], room=s.room)
    r = s.lesson(at(8, 9, 59), at(8, 11), klass=by_room)
    assert r.status_code == 409 and r.get_json()["errors"]["conflicts"][0]["resource"] == "room"
    # a class of another teacher in another room, but the same student: refused when she enrols
    elsewhere = s.new_class("Chinese", teacher=tenant.users["rep2"], room=None)
    ok(s.lesson(at(8, 9, 30), at(8, 10, 30), klass=elsewhere), 201)
    r = s.post(f"/classes/{elsewhere}/students", {"lead_id": lead})
    assert r.status_code == 409 and r.get_json()["errors"]["conflicts"][0]["resource"] == "student"
    assert ok(s.get(f"/classes/{elsewhere}"))["students"] == []  # nothing written


def test_a_cancelled_lesson_frees_its_slot(app, tenant):
    s = school(tenant)
    first = ok(s.lesson(at(9, 18), at(9, 19)), 201)
    assert s.lesson(at(9, 18), at(9, 19)).status_code == 409
    cancelled = ok(s.post(f"/lessons/{first['id']}/cancel", {"reason": "teacher ill"}))
    assert cancelled["status"] == "cancelled" and cancelled["reason"] == "teacher ill"
    ok(s.lesson(at(9, 18), at(9, 19)), 201)


def test_a_lesson_across_midnight_conflicts_with_one_after_midnight(app, tenant):
    s = school(tenant)
    late = ok(s.lesson(at(10, 23, 30), at(11, 0, 30)), 201)
    r = s.lesson(at(11, 0), at(11, 1))
    assert r.status_code == 409 and r.get_json()["errors"]["conflicts"][0]["other_lesson_id"] == late["id"]
    ok(s.lesson(at(11, 0, 30), at(11, 1, 30)), 201)  # back to back after midnight


def test_another_tenants_lessons_never_conflict_and_are_not_found(app, tenant, other_tenant):
    s, o = school(tenant), school(other_tenant)
    mine = ok(s.lesson(at(12, 9), at(12, 10)), 201)
    ok(o.lesson(at(12, 9), at(12, 10)), 201)
    assert o.get(f"/lessons/{mine['id']}").status_code == 404
    assert o.post(f"/lessons/{mine['id']}/cancel", {"reason": "x"}).status_code == 404


@pytest.mark.postgres
def test_sixteen_threads_booking_overlapping_lessons_only_the_non_overlapping_win(app, tenant):
    """Each thread books one hour starting at 09:00 + 30 min × i: odd and even starts overlap their neighbours."""
    s = school(tenant)
    other = s.new_class("Maths G7", room=s.room)  # same teacher and same room
    classes = [s.klass, other]
    barrier = threading.Barrier(16)
    results: dict[int, int] = {}

    def book(i: int) -> None:
        start = datetime(2026, 9, 14, 9, tzinfo=CST) + timedelta(minutes=30 * i)
        body = {"class_id": classes[i % 2], "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=1)).isoformat()}
        client = app.test_client()
        barrier.wait()
        results[i] = client.post("/api/v1/scheduling/lessons", json=body, headers=tenant.headers("admin")).status_code

    threads = [threading.Thread(target=book, args=(i,)) for i in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert set(results.values()) <= {201, 409}
    with tenant_context(tenant.runtime, tenant.id) as ctx:
        lessons = list(ctx.session.execute(
            select(Lesson.starts_at, Lesson.ends_at).where(Lesson.status == "scheduled").order_by(Lesson.starts_at)))
        assert booking.double_bookings(ctx) == 0
        busy = ctx.session.scalar(select(func.count()).select_from(Busy))
        constraints = set(ctx.session.scalars(text(
            "SELECT conname FROM pg_constraint WHERE contype = 'x' AND conrelid = 'scheduling_lesson'::regclass")))
    # the winners never overlap, and every loser overlaps a winner (nothing free was refused)
    for (_s1, e1), (s2, _e2) in zip(lessons, lessons[1:], strict=False):
        assert e1 <= s2
    won = sum(1 for v in results.values() if v == 201)
    assert won == len(lessons) and 8 >= won >= 6  # at most every other half-hour slot
    starts = {x[0] for x in lessons}
    for i, code in results.items():
        start = datetime(2026, 9, 14, 9, tzinfo=CST) + timedelta(minutes=30 * i)
        if code == 409:
            assert any(abs(start - w) < timedelta(hours=1) for w in starts)
    assert busy == 0  # no students: the teacher and the room are held by the lesson rows
    assert constraints == {"scheduling_lesson_teacher_free", "scheduling_lesson_room_free"}


@pytest.mark.postgres
def test_the_database_refuses_an_overlapping_lesson_written_past_the_plugin(app, tenant):
    """The lesson table's exclusion constraints hold the rule, not the plugin's code: a raw copy of a lesson
    with the same teacher (or room) at an overlapping time fails, even by one microsecond (in 2250 too); back-to-back,
    cancelled or online ones do not."""
    s = school(tenant)
    first = ok(s.lesson(at(21, 9), at(21, 10)), 201)
    with tenant_context(tenant.runtime, tenant.id) as ctx:
        row = ctx.session.get(Lesson, first["id"])
        assert row is not None
        base = {c.name: getattr(row, c.name) for c in Lesson.__table__.columns if c.name != "id"}
        hour = timedelta(hours=1)

        def copy(**changes: object) -> bool:
            try:
                with ctx.session.begin_nested():
                    ctx.session.execute(insert(Lesson.__table__), [base | changes])
            except IntegrityError as exc:
                assert getattr(exc.orig, "sqlstate", None) == "23P01"  # exclusion_violation
                return False
            return True

        start, end = row.starts_at, row.ends_at
        assert not copy(starts_at=start + hour / 2, ends_at=end + hour / 2)  # teacher and room
        assert not copy(starts_at=start + hour / 2, ends_at=end + hour / 2, online=True)  # the teacher still
        assert copy(starts_at=end, ends_at=end + hour)  # back-to-back
        us = timedelta(microseconds=1)
        assert not copy(starts_at=start - hour, ends_at=start + us)  # one microsecond of overlap
        assert copy(starts_at=start - hour, ends_at=start)  # back-to-back before it
        # Past 2142 a float8 no longer holds half microseconds (the box's end was once end - 0.5 µs, which
        # rounded up to the next lesson's start there): whole microseconds stay exact until 2285.
        late = datetime(2250, 1, 6, 9, tzinfo=timezone.utc)
        assert copy(starts_at=late, ends_at=late + hour)
        assert copy(starts_at=late + hour, ends_at=late + 2 * hour)  # back-to-back
        assert not copy(starts_at=late + 2 * hour - us, ends_at=late + 3 * hour)  # one microsecond of overlap
        assert not copy(starts_at=late - hour, ends_at=late + us)
        assert copy(starts_at=start, ends_at=end, status="cancelled")  # a cancelled lesson takes nothing
        ctx.session.rollback()


@pytest.mark.postgres
def test_one_student_enrolled_in_two_overlapping_classes_at_once_gets_one_never_a_503(app, tenant):
    """Was: each enrolment wrote the student's busy rows by lesson id, one class's Monday first, the other's
    Friday first (its lessons were made in the other order); each then waited for the other's uncommitted
    row and PostgreSQL failed one with a deadlock (a 503). Rows by time, and a retry of the rare victim."""
    s = school(tenant)
    forward = s.new_class("Maths G8", teacher=tenant.users["rep"], room=None)
    backward = s.new_class("Physics G8", teacher=tenant.users["rep2"], room=None)
    days = range(14, 19)  # Monday to Friday, 09:00–10:00: every lesson of one class overlaps one of the other
    for d in days:
        ok(s.lesson(at(d, 9), at(d, 10), klass=forward), 201)
    for d in reversed(days):
        ok(s.lesson(at(d, 9, 30), at(d, 10, 30), klass=backward), 201)
    students = [s.student(f"138000077{i:02d}") for i in range(8)]
    for lead in students:
        s.buy(lead)  # a student already (a first one's row would make the two enrolments take turns)
    barrier = threading.Barrier(2 * len(students))
    results: dict[tuple[int, int], int] = {}

    def enrol(lead: int, klass: int) -> None:
        client = app.test_client()
        barrier.wait()
        results[lead, klass] = client.post(f"/api/v1/scheduling/classes/{klass}/students", json={"lead_id": lead},
                                           headers=tenant.headers("admin")).status_code

    threads = [threading.Thread(target=enrol, args=(lead, k)) for lead in students for k in (forward, backward)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for lead in students:  # one class each, the other refused as a clash: never both, never a 503
        assert sorted((results[lead, forward], results[lead, backward])) == [201, 409], results
    with tenant_context(tenant.runtime, tenant.id) as ctx:
        assert booking.double_bookings(ctx) == 0
        assert ctx.session.scalar(select(func.count()).select_from(Busy)) == 5 * len(students)
