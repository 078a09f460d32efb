"""Placing lessons: who a lesson takes, and conflicts on half-open intervals [start, end).

A scheduled lesson takes its teacher, its room (unless online) and each of
its students over [starts_at, ends_at). Two intervals of one resource overlap
when ``a.start < b.end AND b.start < a.end``: back-to-back lessons do not, a
cancelled lesson takes nothing, and a lesson across midnight is one interval
like any other (instants, not dates and times compared apart).

The teacher and the room are columns of the lesson row, so on PostgreSQL the
lesson table's own exclusion constraints (``scheduling_lesson_teacher_free``,
``scheduling_lesson_room_free``, ``WHERE status = 'scheduled'``: migration
``scheduling_0003``) refuse an overlap at INSERT or UPDATE of the lesson; the
students, many per lesson, have a ``scheduling_busy`` row each, refused by
``scheduling_busy_no_overlap``. Whatever the concurrency, a second
transaction booking the same slot waits for the first and fails when it
commits. On SQLite the rows are written first, which takes the database's one
write lock, and then checked against the rest in the same transaction, so no
other writer can slip in between. Either way a batch (a whole series) is
written and checked at once, and the 409 names the other lesson.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, delete, false, func, insert, literal, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import aliased

from pelago.plugin import Conflict, HookContext, among, dialect_name

from . import arrays
from .models import Busy, Enrolment, Lesson, Participant

#: the exclusion constraints that refuse a double booking (PostgreSQL)
EXCLUSIONS = ("scheduling_busy_no_overlap", "scheduling_lesson_teacher_free", "scheduling_lesson_room_free")
T = TypeVar("T")


@dataclass(slots=True)  # a term makes tens of thousands: slots make them cheaper to build and read
class Planned:
    """A lesson to place (not yet a row)."""

    class_id: int
    starts_at: datetime
    ends_at: datetime
    teacher_id: int
    room_id: int | None
    hours: Decimal
    students: Sequence[int] = ()
    series_id: int | None = None
    recurrence_id: datetime | None = None
    kind: str = "regular"
    online: bool = False
    makeup_of: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def resources(self) -> list[tuple[str, int]]:
        out = [("teacher", self.teacher_id)]
        if self.room_id is not None and not self.online:
            out.append(("room", self.room_id))
        out += [("student", s) for s in self.students]
        return out


def _iso(at: datetime) -> str:
    return at.isoformat()


def _conflict(found: list[dict[str, Any]]) -> Conflict:
    first = found[0]
    other = first["other_lesson_id"]
    what = f"{first['resource']} {first['resource_id']}"
    msg = (f"{what} is busy: lesson {other} takes it from {first['other_starts_at']} to {first['other_ends_at']}"
           if other is not None else f"{what} is booked twice by this request")
    return Conflict(msg, {"conflicts": found[:50]})


def _within_batch(items: Sequence[tuple[str, int, datetime, datetime, int]]) -> list[dict[str, Any]]:
    """Overlaps among the new intervals themselves (a series that overlaps itself, a student twice)."""
    by: dict[tuple[str, int], list[tuple[datetime, datetime, int]]] = defaultdict(list)
    for res, rid, start, end, idx in items:
        by[(res, rid)].append((start, end, idx))
    found = []
    for (res, rid), spans in by.items():
        spans.sort()
        for (s1, e1, i1), (s2, _e2, i2) in zip(spans, spans[1:], strict=False):
            if s2 < e1:
                found.append({"resource": res, "resource_id": rid, "index": i2, "starts_at": _iso(s2),
                              "other_lesson_id": None, "other_index": i1, "other_starts_at": _iso(s1),
                              "other_ends_at": _iso(e1)})
    return found


def clashes(ctx: HookContext, items: Sequence[tuple[str, int, datetime, datetime, int]],
            ignore: Iterable[int] = ()) -> list[dict[str, Any]]:
    """Scheduled lessons that take a resource of the given intervals ``(resource, id, start, end, index)``.

    One query per kind of resource (teachers and rooms from the lessons,
    students from their busy rows) within the batch's overall window,
    compared in Python. ``ignore``: lessons not to count (the ones being
    placed or moved).
    """
    if not items:
        return []
    lo = min(s for _, _, s, _, _ in items)
    hi = max(e for _, _, _, e, _ in items)
    ignored = set(ignore)
    by_kind: dict[str, set[int]] = defaultdict(set)
    for r, i, *_ in items:
        by_kind[r].add(i)
    rows_by: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for res, ids in by_kind.items():
        for row in taken(ctx, res, ids, lo, hi):
            if row.lesson_id not in ignored:
                rows_by[(res, row.resource_id)].append(row)
    found = []
    for res, rid, start, end, idx in items:
        for row in rows_by.get((res, rid), ()):
            if row.starts_at < end and start < row.ends_at:
                found.append({"resource": res, "resource_id": rid, "index": idx, "starts_at": _iso(start),
                              "other_lesson_id": row.lesson_id, "other_starts_at": _iso(row.starts_at),
                              "other_ends_at": _iso(row.ends_at)})
                break
    return found


def taken(ctx: HookContext, resource: str, ids: Iterable[int], lo: datetime, hi: datetime) -> list[Any]:
    """``(lesson_id, resource_id, starts_at, ends_at)`` of the scheduled lessons taking ``ids`` within [lo, hi).

    Teachers and rooms: the lessons themselves; on PostgreSQL through the
    GiST index of their exclusion constraint (one box covering the ids and
    the window, ``scheduling_span``). Students: their busy rows.
    """
    wanted = sorted(set(ids))
    if not wanted:
        return []
    session = ctx.session
    if resource == "student":
        return list(session.execute(
            select(Busy.lesson_id, Busy.resource_id, Busy.starts_at, Busy.ends_at)
            .where(Busy.resource == "student", among(session, Busy.resource_id, wanted), Busy.starts_at < hi,
                   Busy.ends_at > lo)
        ))
    col = Lesson.teacher_id if resource == "teacher" else Lesson.room_id
    cond = [among(session, col, wanted), Lesson.status == "scheduled", Lesson.starts_at < hi, Lesson.ends_at > lo]
    if resource == "room":
        cond += [Lesson.room_id.is_not(None), Lesson.online == false()]
    if dialect_name(session) == "postgresql":
        cond.append(func.scheduling_span(col, Lesson.starts_at, Lesson.ends_at).op("&&")(func.bound_box(
            func.scheduling_span(wanted[0], lo, hi), func.scheduling_span(wanted[-1], lo, hi))))
    return list(session.execute(
        select(Lesson.id.label("lesson_id"), col.label("resource_id"), Lesson.starts_at, Lesson.ends_at).where(*cond)
    ))


def _student_rows(ctx: HookContext, ids: Sequence[int], planned: Sequence[Planned]) -> list[dict[str, Any]]:
    t = ctx.tenant.id
    return [
        {"tenant_id": t, "lesson_id": lid, "resource": "student", "resource_id": s, "starts_at": p.starts_at,
         "ends_at": p.ends_at}
        for lid, p in zip(ids, planned, strict=True) for s in p.students
    ]


def _intervals(planned: Sequence[Planned]) -> list[tuple[str, int, datetime, datetime, int]]:
    return [(res, rid, p.starts_at, p.ends_at, i) for i, p in enumerate(planned) for res, rid in p.resources()]


def _is_exclusion(exc: IntegrityError) -> bool:
    return (getattr(exc.orig, "sqlstate", None) == "23P01"
            or any(name in str(exc.orig) for name in EXCLUSIONS))


#: times a booking's write is tried again after PostgreSQL chose it as a deadlock's victim
DEADLOCK_TRIES = 3


def _guarded(ctx: HookContext, planned: Sequence[Planned], write: Callable[[], T], ignore: Iterable[int] = ()) -> T:
    """Run ``write`` in a savepoint; an exclusion constraint's refusal becomes a 409 naming the other lesson.

    Two transactions inserting overlapping lessons at once each find the
    other's row while checking the constraint and wait for each other:
    PostgreSQL breaks the deadlock by failing one. Its savepoint is rolled
    back (its locks with it) and it writes again, now waiting for the other
    to finish: a 409 if the other committed, the slot if it rolled back.
    ``ignore``: lessons whose old rows must not count as the clash (the ones
    being moved). On SQLite ``write`` checks by itself (:func:`_check`).
    """
    for attempt in range(DEADLOCK_TRIES):
        try:
            with ctx.session.begin_nested():
                return write()
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "40P01" or attempt == DEADLOCK_TRIES - 1:
                raise
        except IntegrityError as exc:
            if not _is_exclusion(exc):
                raise
            with ctx.session.no_autoflush:  # objects changed before the savepoint are still dirty: no second try
                found = clashes(ctx, _intervals(planned), ignore) or [
                    {"resource": "?", "resource_id": 0, "other_lesson_id": None, "other_starts_at": "",
                     "other_ends_at": ""}
                ]
            raise _conflict(found) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _check(ctx: HookContext, planned: Sequence[Planned], mine: Iterable[int]) -> None:
    """SQLite: compare the rows just written with the rest. This transaction already holds the one write lock
    (it wrote first), so nobody can book in between the write and the check."""
    if dialect_name(ctx.session) == "postgresql":
        return  # the exclusion constraints checked at the write
    found = clashes(ctx, _intervals(planned), mine)
    if found:
        raise _conflict(found)


def _lesson_rows(ctx: HookContext, planned: Sequence[Planned]) -> list[dict[str, Any]]:
    now = ctx.now()
    t = ctx.tenant.id
    return [{"tenant_id": t, "class_id": p.class_id, "series_id": p.series_id, "recurrence_id": p.recurrence_id,
             "starts_at": p.starts_at, "ends_at": p.ends_at, "teacher_id": p.teacher_id, "room_id": p.room_id,
             "kind": p.kind, "status": "scheduled", "reason": "", "makeup_of": p.makeup_of, "hours": p.hours,
             "online": p.online, "auto_consumed": False, "created_at": now} for p in planned]


def place(ctx: HookContext, planned: Sequence[Planned]) -> list[int]:
    """Insert ``planned`` lessons and their students' busy rows as one batch; 409 (nothing written) on any conflict."""
    if not planned:
        return []
    inner = _within_batch(_intervals(planned))
    if inner:
        raise _conflict(inner)
    session = ctx.session

    def write() -> list[int]:
        ids = list(session.scalars(insert(Lesson).returning(Lesson.id, sort_by_parameter_order=True),
                                   _lesson_rows(ctx, planned)))
        rows = _student_rows(ctx, ids, planned)
        if rows:
            session.execute(insert(Busy), rows)
        _check(ctx, planned, ids)
        return ids

    return _guarded(ctx, planned, write)


def place_series(ctx: HookContext, planned: Sequence[Planned], series_ids: Sequence[int]) -> int:
    """Place the lessons of new series (students: their classes' enrolment) as one batch; returns how many.

    The lessons' INSERT is checked by the lesson table's exclusion
    constraints (teacher, room); the students' busy rows are made by the
    database from the lessons and the enrolment with one ``INSERT … SELECT``,
    not sent row by row. 409 (nothing written) on any conflict.
    """
    if not planned:
        return 0
    inner = _within_batch(_intervals(planned))
    if inner:
        raise _conflict(inner)
    session = ctx.session
    mine = and_(Lesson.tenant_id == ctx.tenant.id, among(session, Lesson.series_id, list(series_ids)))

    def write() -> None:
        _insert_lessons(ctx, planned)
        if any(p.students for p in planned):
            session.execute(insert(Busy).from_select(
                ["tenant_id", "lesson_id", "resource", "resource_id", "starts_at", "ends_at"],
                select(Lesson.tenant_id, Lesson.id, literal("student", Busy.resource.type), Enrolment.lead_id,
                       Lesson.starts_at, Lesson.ends_at)
                .join(Enrolment, and_(Enrolment.tenant_id == Lesson.tenant_id, Enrolment.class_id == Lesson.class_id))
                .where(mine),
            ))
        if dialect_name(session) != "postgresql":
            _check(ctx, planned, session.scalars(select(Lesson.id).where(mine)).all())

    _guarded(ctx, planned, write)
    return len(planned)


def _insert_lessons(ctx: HookContext, planned: Sequence[Planned]) -> None:
    """The lesson rows, one statement: on PostgreSQL as arrays (``INSERT … SELECT FROM unnest``), each column one
    text literal (:mod:`.arrays`)."""
    session = ctx.session
    if dialect_name(session) != "postgresql":
        session.execute(insert(Lesson.__table__), _lesson_rows(ctx, planned))
        return
    at = Lesson.__table__.c.starts_at.type
    starts = arrays.times(p.starts_at for p in planned)  # a series' recurrence ids are its starts
    session.execute(text(
        "INSERT INTO scheduling_lesson (tenant_id, status, reason, auto_consumed, created_at, class_id, series_id,"
        " recurrence_id, starts_at, ends_at, teacher_id, room_id, kind, makeup_of, hours, online)"
        " SELECT :t, 'scheduled', '', false, :now, u.* FROM unnest(CAST(:class_id AS bigint[]),"
        " CAST(:series_id AS bigint[]), CAST(:recurrence_id AS timestamptz[]), CAST(:starts_at AS timestamptz[]),"
        " CAST(:ends_at AS timestamptz[]), CAST(:teacher_id AS bigint[]), CAST(:room_id AS bigint[]),"
        " CAST(:kind AS text[]), CAST(:makeup_of AS bigint[]), CAST(:hours AS numeric[]),"
        " CAST(:online AS boolean[])) AS u"
    ).bindparams(bindparam("now", type_=at)), {
        "t": ctx.tenant.id, "now": ctx.now(), "class_id": arrays.plain(p.class_id for p in planned),
        "series_id": arrays.plain(p.series_id for p in planned),
        "recurrence_id": starts if all(p.recurrence_id is p.starts_at for p in planned)
        else arrays.times(p.recurrence_id for p in planned),
        "starts_at": starts, "ends_at": arrays.times(p.ends_at for p in planned),
        "teacher_id": arrays.plain(p.teacher_id for p in planned), "room_id": arrays.plain(p.room_id for p in planned),
        "kind": arrays.texts(p.kind for p in planned), "makeup_of": arrays.plain(p.makeup_of for p in planned),
        "hours": arrays.plain(p.hours for p in planned), "online": arrays.plain(p.online for p in planned),
    })


def students_of(ctx: HookContext, lessons: Sequence[Lesson]) -> dict[int, list[int]]:
    """Each lesson's students: its class's enrolment (for regular lessons) and its own participants."""
    out: dict[int, list[int]] = {lesson.id: [] for lesson in lessons}
    if not lessons:
        return out
    class_ids = {lesson.class_id for lesson in lessons}
    enrolled: dict[int, list[int]] = defaultdict(list)
    for class_id, lead_id in ctx.session.execute(
        select(Enrolment.class_id, Enrolment.lead_id).where(Enrolment.class_id.in_(class_ids))
    ):
        enrolled[class_id].append(lead_id)
    for lesson in lessons:
        out[lesson.id] += enrolled.get(lesson.class_id, [])
    for lesson_id, lead_id in ctx.session.execute(
        select(Participant.lesson_id, Participant.lead_id).where(Participant.lesson_id.in_(list(out)))
    ):
        if lead_id not in out[lesson_id]:
            out[lesson_id].append(lead_id)
    return out


def as_planned(lesson: Lesson, students: Sequence[int]) -> Planned:
    return Planned(lesson.class_id, lesson.starts_at, lesson.ends_at, lesson.teacher_id, lesson.room_id,
                   lesson.hours, students, lesson.series_id, lesson.recurrence_id, lesson.kind, lesson.online,
                   lesson.makeup_of)


def retake(ctx: HookContext, lessons: Sequence[Lesson], students: dict[int, list[int]]) -> None:
    """After ``lessons`` changed in the session (time, teacher, room, students): write them and their students'
    busy rows, checked again as one batch; 409 (nothing written) on a clash.

    The lessons are written by one UPDATE in a savepoint, not by the ORM's
    flush: a refused flush would leave the session unusable, a refused
    statement only rolls the savepoint back. Their objects are expired, so
    they read back what the database holds (the change, or after a 409 the
    old values).
    """
    ids = [lesson.id for lesson in lessons]
    placed = [lesson for lesson in lessons if lesson.status == "scheduled"]
    planned = [as_planned(lesson, students[lesson.id]) for lesson in placed]
    inner = _within_batch(_intervals(planned))
    if inner:
        raise _conflict(inner)
    session = ctx.session
    table = Lesson.__table__
    at = table.c.starts_at.type
    values = [{"lid": x.id, "s": x.starts_at, "e": x.ends_at, "who": x.teacher_id, "room": x.room_id, "why": x.reason}
              for x in lessons]
    for x in lessons:
        session.expire(x)

    def write() -> None:
        session.connection().execute(
            update(table).where(table.c.tenant_id == ctx.tenant.id, table.c.id == bindparam("lid"))
            .values(starts_at=bindparam("s", type_=at), ends_at=bindparam("e", type_=at),
                    teacher_id=bindparam("who"), room_id=bindparam("room"), reason=bindparam("why")),
            values,
        )
        session.execute(delete(Busy).where(Busy.lesson_id.in_(ids)))
        rows = _student_rows(ctx, [lesson.id for lesson in placed], planned)
        if rows:
            session.execute(insert(Busy), rows)
        _check(ctx, planned, ids)

    _guarded(ctx, planned, write, ids)


def add_students(ctx: HookContext, lesson_ids: Sequence[int], lead_id: int) -> None:
    """Make ``lead_id`` busy in ``lesson_ids`` (an enrolment, a trial, a makeup); 409 on a clash.

    On PostgreSQL the student's exclusion constraint is the lock: a row that
    overlaps another transaction's uncommitted row waits for it. Two
    enrolments of one student in classes whose lessons overlap would each
    wait for the other if they wrote their rows in different orders (one
    class's lessons by id is not the other's), so the rows are written by
    time, the order the constraint compares them in (then by lesson id): the
    first to write the earliest overlapping slot goes on, the other waits for
    it. Two rows of the same slot written at the very same moment can still
    each find the other's; PostgreSQL then fails one with a deadlock, whose
    savepoint is rolled back and written again, now waiting for the other
    (a 409 if it committed), as :func:`_guarded` does for lessons.
    """
    lessons = list(ctx.session.scalars(
        select(Lesson).where(Lesson.id.in_(lesson_ids), Lesson.status == "scheduled")
        .order_by(Lesson.starts_at, Lesson.ends_at, Lesson.id)
    ))
    if not lessons:
        return
    rows = [{"tenant_id": ctx.tenant.id, "lesson_id": x.id, "resource": "student", "resource_id": lead_id,
             "starts_at": x.starts_at, "ends_at": x.ends_at} for x in lessons]
    items = [("student", lead_id, x.starts_at, x.ends_at, i) for i, x in enumerate(lessons)]
    inner = _within_batch(items)
    if inner:
        raise _conflict(inner)
    for attempt in range(DEADLOCK_TRIES):
        try:
            return _add_students(ctx, lessons, rows, items, lead_id)
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "40P01" or attempt == DEADLOCK_TRIES - 1:
                raise


def _add_students(ctx: HookContext, lessons: Sequence[Lesson], rows: list[dict[str, Any]],
                  items: list[tuple[str, int, datetime, datetime, int]], lead_id: int) -> None:
    """One try of :func:`add_students`'s write, in a savepoint (rolled back, its locks with it, if it fails)."""
    session = ctx.session
    mine = [x.id for x in lessons]
    with session.begin_nested():
        try:
            with session.begin_nested():
                session.execute(insert(Busy), rows)
        except IntegrityError as exc:
            if not _is_exclusion(exc):
                raise Conflict(f"student {lead_id} is already in one of these lessons") from None
            raise _conflict(clashes(ctx, items, mine) or [
                {"resource": "student", "resource_id": lead_id, "other_lesson_id": None,
                 "other_starts_at": "", "other_ends_at": ""}]) from None
        if dialect_name(session) != "postgresql":
            found = clashes(ctx, items, mine)
            if found:
                raise _conflict(found)


def free_students(ctx: HookContext, lesson_ids: Sequence[int], lead_id: int) -> None:
    ctx.session.execute(delete(Busy).where(Busy.lesson_id.in_(lesson_ids), Busy.resource == "student",
                                           Busy.resource_id == lead_id))


def release(ctx: HookContext, lesson_ids: Sequence[int]) -> None:
    """Free the students ``lesson_ids`` took (a cancellation; the teacher and room are free by the lesson's status)."""
    ctx.session.execute(delete(Busy).where(Busy.lesson_id.in_(lesson_ids)))


def double_bookings(ctx: HookContext) -> int:
    """How many pairs of the tenant's scheduled lessons share a teacher, a room or a student and overlap
    (for tests and checks: always 0)."""
    t = ctx.tenant.id
    a, b = aliased(Busy), aliased(Busy)
    students = ctx.session.scalar(
        select(func.count()).select_from(a).join(b, and_(
            b.tenant_id == a.tenant_id, b.resource == a.resource, b.resource_id == a.resource_id,
            b.lesson_id > a.lesson_id, b.starts_at < a.ends_at, a.starts_at < b.ends_at))
        .where(a.tenant_id == t)
    ) or 0
    x, y = aliased(Lesson), aliased(Lesson)
    overlap = and_(y.tenant_id == x.tenant_id, y.id > x.id, y.status == "scheduled", y.starts_at < x.ends_at,
                   x.starts_at < y.ends_at)
    teachers = ctx.session.scalar(
        select(func.count()).select_from(x).join(y, and_(overlap, y.teacher_id == x.teacher_id))
        .where(x.tenant_id == t, x.status == "scheduled")
    ) or 0
    rooms = ctx.session.scalar(
        select(func.count()).select_from(x).join(y, and_(overlap, y.room_id == x.room_id, y.online == false()))
        .where(x.tenant_id == t, x.status == "scheduled", x.room_id.is_not(None), x.online == false())
    ) or 0
    return int(students + teachers + rooms)
