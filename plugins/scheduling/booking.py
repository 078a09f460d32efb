"""Placing lessons: the busy-resource rows, and conflicts on half-open intervals [start, end).

A scheduled lesson takes its teacher, its room (unless online) and each of
its students over [starts_at, ends_at), one ``scheduling_busy`` row each.
Two rows of one resource overlap when ``a.start < b.end AND b.start < a.end``:
back-to-back lessons do not, a cancelled lesson has no rows, and a lesson
across midnight is one interval like any other (instants, not dates and
times compared apart).

On PostgreSQL the exclusion constraint ``scheduling_busy_no_overlap``
(``btree_gist``, ``tstzrange(starts_at, ends_at, '[)') WITH &&``) refuses an
overlap at INSERT, whatever the concurrency: a second transaction booking the
same slot waits for the first and fails when it commits. On SQLite the rows
are inserted first, which takes the database's one write lock, and then
checked against the rest in the same transaction, so no other writer can
slip in between. Either way a batch (a whole series) is inserted and checked
at once, and the 409 names the other lesson.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, literal, or_, select, text, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from pelago.plugin import Conflict, HookContext, among, dialect_name

from . import arrays
from .models import Busy, Enrolment, Lesson, Participant

EXCLUSION = "scheduling_busy_no_overlap"


@dataclass
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
    """Existing busy rows that overlap the given intervals ``(resource, id, start, end, index)``.

    One query per call: the rows of the resources concerned within the
    batch's overall window, compared in Python. ``ignore``: lessons not to
    count (the ones being moved).
    """
    if not items:
        return []
    keys = {(r, i) for r, i, *_ in items}
    lo = min(s for _, _, s, _, _ in items)
    hi = max(e for _, _, _, e, _ in items)
    ignored = set(ignore)
    rows_by: dict[tuple[str, int], list[Any]] = defaultdict(list)
    by_kind: dict[str, set[int]] = defaultdict(set)
    for r, i in keys:
        by_kind[r].add(i)
    cond = or_(*(and_(Busy.resource == r, Busy.resource_id.in_(sorted(ids))) for r, ids in by_kind.items()))
    for row in ctx.session.execute(
        select(Busy.lesson_id, Busy.resource, Busy.resource_id, Busy.starts_at, Busy.ends_at)
        .where(cond, Busy.starts_at < hi, Busy.ends_at > lo)
    ):
        if row.lesson_id not in ignored:
            rows_by[(row.resource, row.resource_id)].append(row)
    found = []
    for res, rid, start, end, idx in items:
        for row in rows_by.get((res, rid), ()):
            if row.starts_at < end and start < row.ends_at:
                found.append({"resource": res, "resource_id": rid, "index": idx, "starts_at": _iso(start),
                              "other_lesson_id": row.lesson_id, "other_starts_at": _iso(row.starts_at),
                              "other_ends_at": _iso(row.ends_at)})
                break
    return found


def _busy_rows(ctx: HookContext, ids: Sequence[int], planned: Sequence[Planned]) -> list[dict[str, Any]]:
    t = ctx.tenant.id
    return [
        {"tenant_id": t, "lesson_id": lid, "resource": res, "resource_id": rid, "starts_at": p.starts_at,
         "ends_at": p.ends_at}
        for lid, p in zip(ids, planned, strict=True) for res, rid in p.resources()
    ]


def _intervals(planned: Sequence[Planned]) -> list[tuple[str, int, datetime, datetime, int]]:
    return [(res, rid, p.starts_at, p.ends_at, i) for i, p in enumerate(planned) for res, rid in p.resources()]


def _is_exclusion(exc: IntegrityError) -> bool:
    return EXCLUSION in str(exc.orig) or getattr(getattr(exc.orig, "sqlstate", None), "__str__", lambda: "")() == "23P01"


def _take(ctx: HookContext, lesson_ids: Sequence[int], planned: Sequence[Planned], ignore: Iterable[int]) -> None:
    """Insert the busy rows of ``lesson_ids``; 409 naming the other lesson if any overlaps."""
    rows = _busy_rows(ctx, lesson_ids, planned)
    if not rows:
        return
    session = ctx.session
    if dialect_name(session) == "postgresql":
        try:
            with session.begin_nested():
                session.execute(insert(Busy), rows)
        except IntegrityError as exc:
            if not _is_exclusion(exc):
                raise
            found = clashes(ctx, _intervals(planned), ignore) or [
                {"resource": "?", "resource_id": 0, "other_lesson_id": None, "other_starts_at": "", "other_ends_at": ""}
            ]
            raise _conflict(found) from None
        return
    # SQLite: this transaction already holds the one write lock (it wrote the lessons, or deleted
    # their old rows, first), so nobody can book in between the insert and the check.
    session.execute(insert(Busy), rows)
    found = clashes(ctx, _intervals(planned), {*ignore, *lesson_ids})
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
    """Insert ``planned`` lessons and their busy rows as one batch; 409 (nothing written) on any conflict."""
    if not planned:
        return []
    inner = _within_batch(_intervals(planned))
    if inner:
        raise _conflict(inner)
    session = ctx.session
    with session.begin_nested():
        ids = list(session.scalars(insert(Lesson).returning(Lesson.id, sort_by_parameter_order=True),
                                   _lesson_rows(ctx, planned)))
        _take(ctx, ids, planned, ())
    return ids


def place_series(ctx: HookContext, planned: Sequence[Planned], series_ids: Sequence[int]) -> int:
    """Place the lessons of new series (students: their classes' enrolment) as one batch; returns how many.

    The busy rows are made by the database from the lessons and the
    enrolment with one ``INSERT … SELECT``, not sent row by row; 409 (nothing
    written) on any conflict.
    """
    if not planned:
        return 0
    inner = _within_batch(_intervals(planned))
    if inner:
        raise _conflict(inner)
    with ctx.session.begin_nested():
        _insert_lessons(ctx, planned)
        _take_from_lessons(ctx, series_ids, planned)
    return len(planned)


def _insert_lessons(ctx: HookContext, planned: Sequence[Planned]) -> None:
    """The lesson rows, one statement: on PostgreSQL as arrays (``INSERT … SELECT FROM unnest``), each column one
    text literal (:mod:`.arrays`)."""
    session = ctx.session
    if dialect_name(session) != "postgresql":
        session.execute(insert(Lesson.__table__), _lesson_rows(ctx, planned))
        return
    at = Lesson.__table__.c.starts_at.type
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
        "recurrence_id": arrays.times(p.recurrence_id for p in planned),
        "starts_at": arrays.times(p.starts_at for p in planned), "ends_at": arrays.times(p.ends_at for p in planned),
        "teacher_id": arrays.plain(p.teacher_id for p in planned), "room_id": arrays.plain(p.room_id for p in planned),
        "kind": arrays.texts(p.kind for p in planned), "makeup_of": arrays.plain(p.makeup_of for p in planned),
        "hours": arrays.plain(p.hours for p in planned), "online": arrays.plain(p.online for p in planned),
    })


def _take_from_lessons(ctx: HookContext, series_ids: Sequence[int], planned: Sequence[Planned]) -> None:
    """The busy rows of the series' lessons made in the database: teacher, room (unless online), enrolled students."""
    session = ctx.session
    t = ctx.tenant.id
    mine = and_(Lesson.tenant_id == t, among(session, Lesson.series_id, list(series_ids)))
    cols = (Lesson.tenant_id, Lesson.id, Lesson.starts_at, Lesson.ends_at)
    parts = [
        select(cols[0], cols[1], literal("teacher", Busy.resource.type), Lesson.teacher_id, *cols[2:]).where(mine),
        select(cols[0], cols[1], literal("room", Busy.resource.type), Lesson.room_id, *cols[2:])
        .where(mine, Lesson.room_id.is_not(None), Lesson.online.is_(False)),
        select(cols[0], cols[1], literal("student", Busy.resource.type), Enrolment.lead_id, *cols[2:])
        .join(Enrolment, and_(Enrolment.tenant_id == Lesson.tenant_id, Enrolment.class_id == Lesson.class_id))
        .where(mine),
    ]
    target = ["tenant_id", "lesson_id", "resource", "resource_id", "starts_at", "ends_at"]
    stmt = insert(Busy).from_select(target, union_all(*parts))
    if dialect_name(session) == "postgresql":
        try:
            with session.begin_nested():
                session.execute(stmt)
        except IntegrityError as exc:
            if not _is_exclusion(exc):
                raise
            found = clashes(ctx, _intervals(planned)) or [
                {"resource": "?", "resource_id": 0, "other_lesson_id": None, "other_starts_at": "",
                 "other_ends_at": ""}]
            raise _conflict(found) from None
        return
    session.execute(stmt)  # SQLite: the lessons' INSERT already took the one write lock
    ids = session.scalars(select(Lesson.id).where(mine)).all()
    found = clashes(ctx, _intervals(planned), ids)
    if found:
        raise _conflict(found)


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
    """After ``lessons`` changed (time, teacher, room, students): replace their busy rows, checking again."""
    ids = [lesson.id for lesson in lessons]
    planned = [as_planned(lesson, students[lesson.id]) for lesson in lessons if lesson.status == "scheduled"]
    inner = _within_batch(_intervals(planned))
    if inner:
        raise _conflict(inner)
    with ctx.session.begin_nested():
        ctx.session.execute(delete(Busy).where(Busy.lesson_id.in_(ids)))
        ctx.session.flush()
        _take(ctx, [lesson.id for lesson in lessons if lesson.status == "scheduled"], planned, ids)


def add_students(ctx: HookContext, lesson_ids: Sequence[int], lead_id: int) -> None:
    """Make ``lead_id`` busy in ``lesson_ids`` (an enrolment, a trial, a makeup); 409 on a clash."""
    lessons = list(ctx.session.scalars(
        select(Lesson).where(Lesson.id.in_(lesson_ids), Lesson.status == "scheduled").order_by(Lesson.id)
    ))
    if not lessons:
        return
    rows = [{"tenant_id": ctx.tenant.id, "lesson_id": x.id, "resource": "student", "resource_id": lead_id,
             "starts_at": x.starts_at, "ends_at": x.ends_at} for x in lessons]
    items = [("student", lead_id, x.starts_at, x.ends_at, i) for i, x in enumerate(lessons)]
    inner = _within_batch(items)
    if inner:
        raise _conflict(inner)
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
    """Free everything ``lesson_ids`` took (a cancellation)."""
    ctx.session.execute(delete(Busy).where(Busy.lesson_id.in_(lesson_ids)))


def double_bookings(ctx: HookContext) -> int:
    """How many pairs of the tenant's busy rows overlap (for tests and checks: always 0)."""
    a, b = aliased(Busy), aliased(Busy)
    return ctx.session.scalar(
        select(func.count()).select_from(a).join(b, and_(
            b.tenant_id == a.tenant_id, b.resource == a.resource, b.resource_id == a.resource_id,
            b.lesson_id > a.lesson_id, b.starts_at < a.ends_at, a.starts_at < b.ends_at))
        .where(a.tenant_id == ctx.tenant.id)
    ) or 0
