"""Classes, enrolment, series and lessons: everything that places a lesson goes through :mod:`.booking`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update

from pelago.plugin import Conflict, HookContext, InvalidInput, NotFound, User

from . import booking, policy
from .booking import Planned
from .ledger import ensure_student
from .models import Account, Campus, Course, Enrolment, Klass, Lesson, Participant, Room, Series, Teacher
from .recurrence import expand

PLUGIN = "scheduling"


def get(ctx: HookContext, model: Any, ident: int, what: str, *, field: str | None = None) -> Any:
    """The tenant's row, or 404 (another tenant's row is simply not found); 422 on ``field`` if given."""
    row = ctx.session.get(model, ident)
    if row is None or row.tenant_id != ctx.tenant.id:
        if field:
            raise InvalidInput(f"no {what} {ident}", {field: [f"no {what} {ident} in this tenant"]})
        raise NotFound(f"{what} {ident} not found")
    return row


def tz_of(ctx: HookContext, campus_id: int) -> ZoneInfo:
    return ZoneInfo(get(ctx, Campus, campus_id, "campus").timezone)


# --- catalogue -----------------------------------------------------------------------------------

def add_teacher(ctx: HookContext, data: dict[str, Any]) -> Teacher:
    if ctx.session.scalar(select(User.id).where(User.id == data["user_id"])) is None:
        raise InvalidInput("unknown user", {"user_id": [f"no user {data['user_id']} in this tenant"]})
    row = ctx.session.get(Teacher, data["user_id"])
    if row is None:
        row = Teacher(user_id=data["user_id"], subjects=data["subjects"], active=data["active"])
        ctx.session.add(row)
    else:
        row.subjects, row.active = data["subjects"], data["active"]
    ctx.session.flush()
    return row


def create_class(ctx: HookContext, data: dict[str, Any]) -> Klass:
    get(ctx, Campus, data["campus_id"], "campus", field="campus_id")
    get(ctx, Course, data["course_id"], "course", field="course_id")
    teacher = ctx.session.get(Teacher, data["teacher_id"])
    if teacher is None or not teacher.active:
        raise InvalidInput("not a teacher", {"teacher_id": [f"user {data['teacher_id']} is not an active teacher"]})
    if data.get("room_id") is not None:
        room = get(ctx, Room, data["room_id"], "room", field="room_id")
        if room.campus_id != data["campus_id"]:
            raise InvalidInput("room of another campus", {"room_id": ["is not a room of this campus"]})
        if data["capacity"] > room.capacity:
            raise InvalidInput("over the room's capacity",
                               {"capacity": [f"room {room.id} seats {room.capacity}"]})
    row = Klass(created_at=ctx.now(), hours_per_lesson=Decimal(data.pop("hours_per_lesson")), **data)
    ctx.session.add(row)
    ctx.session.flush()
    return row


def class_students(ctx: HookContext, class_id: int) -> list[int]:
    return list(ctx.session.scalars(
        select(Enrolment.lead_id).where(Enrolment.class_id == class_id).order_by(Enrolment.lead_id)
    ))


def _future_lessons(ctx: HookContext, class_id: int) -> list[int]:
    return list(ctx.session.scalars(
        select(Lesson.id).where(Lesson.class_id == class_id, Lesson.status == "scheduled",
                                Lesson.starts_at >= ctx.now())
    ))


def enrol(ctx: HookContext, class_id: int, lead_id: int, account_id: int | None) -> Enrolment:
    """Put a student in a class: busy in each of its future lessons (409 on a clash), within capacity."""
    klass = get(ctx, Klass, class_id, "class")
    ensure_student(ctx, lead_id)
    if account_id is not None:
        acc = get(ctx, Account, account_id, "account", field="account_id")
        if acc.lead_id != lead_id:
            raise InvalidInput("another student's account", {"account_id": ["belongs to another student"]})
    if ctx.session.get(Enrolment, (class_id, lead_id)) is not None:
        raise Conflict(f"student {lead_id} is already in class {class_id}")
    count = ctx.session.scalar(select(func.count()).select_from(Enrolment).where(Enrolment.class_id == class_id))
    if (count or 0) >= klass.capacity:
        raise Conflict(f"class {class_id} is full ({klass.capacity})", {"class_id": ["full"]})
    row = Enrolment(class_id=class_id, lead_id=lead_id, account_id=account_id, enrolled_at=ctx.now())
    ctx.session.add(row)
    ctx.session.flush()
    booking.add_students(ctx, _future_lessons(ctx, class_id), lead_id)
    return row


def transfer(ctx: HookContext, class_id: int, lead_id: int, to_class_id: int) -> Enrolment:
    """Move a student to another class keeping the same account (one balance); past attendance stays."""
    old = ctx.session.get(Enrolment, (class_id, lead_id))
    if old is None or old.tenant_id != ctx.tenant.id:
        raise NotFound(f"student {lead_id} is not in class {class_id}")
    account_id = old.account_id
    booking.free_students(ctx, _future_lessons(ctx, class_id), lead_id)
    ctx.session.delete(old)
    ctx.session.flush()
    return enrol(ctx, to_class_id, lead_id, account_id)


# --- series --------------------------------------------------------------------------------------

def _days(data: dict[str, Any]) -> dict[str, str]:
    return {"holiday": data.get("holidays", "skip"), "makeup_workday": data.get("makeup_workdays", "skip"),
            "unknown": data.get("unknown_days", "refuse"), "workday": "keep", "weekend": "keep"}


def occurrences(ctx: HookContext, klass: Klass, data: dict[str, Any], tz: ZoneInfo | None = None) -> list[Any]:
    tz = tz or tz_of(ctx, klass.campus_id)
    start = datetime.strptime(data["start"], "%Y-%m-%dT%H:%M")
    return expand(data["rrule"], start, timedelta(minutes=data["duration_minutes"]), tz,
                  cap=ctx.settings(PLUGIN)["max_occurrences"], days=_days(data),
                  skip_dates=frozenset(data.get("skip_dates") or ()))


def _planned(klass: Klass, occ: Sequence[Any], students: Sequence[int], series_id: int | None) -> list[Planned]:
    return [Planned(klass.id, o.starts_at, o.ends_at, klass.teacher_id, klass.room_id, klass.hours_per_lesson,
                    students, series_id, o.starts_at, "regular", klass.online) for o in occ]


def preview(ctx: HookContext, class_id: int, data: dict[str, Any]) -> dict[str, Any]:
    """The occurrences a series would have, with day kinds and conflicts; nothing is written."""
    klass = get(ctx, Klass, class_id, "class", field="class_id")
    occ = occurrences(ctx, klass, data)
    kept = [o for o in occ if o.action == "keep"]
    planned = _planned(klass, kept, class_students(ctx, klass.id), None)
    found = booking.clashes(ctx, booking._intervals(planned))
    by_index: dict[int, list[dict[str, Any]]] = {}
    for f in found:
        by_index.setdefault(f["index"], []).append(f)
    index = {id(o): i for i, o in enumerate(kept)}
    items = []
    for o in occ:
        row = o.out()
        row["conflicts"] = by_index.get(index[id(o)], []) if id(o) in index else []
        items.append(row)
    return {"occurrences": items, "kept": len(kept), "skipped": sum(o.action == "skip" for o in occ),
            "unknown_days": sum(o.day == "unknown" for o in occ)}


def create_series(ctx: HookContext, data: dict[str, Any]) -> dict[str, Any]:
    """Expand the rule and place every kept occurrence as one batch (checked once); 409 names a clash."""
    return create_many(ctx, [data])[0]


def create_many(ctx: HookContext, specs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Several series (a term) as one batch: one INSERT of series, one of lessons, one of busy rows.

    Each spec is a :class:`~.schemas.SeriesIn`. Every kept occurrence of
    every spec is checked at once, against the others and the database; a
    clash or a refused day refuses the whole batch, and nothing is written.
    """
    classes = {k.id: k for k in ctx.session.scalars(select(Klass).where(Klass.id.in_({d["class_id"] for d in specs})))}
    tzs: dict[int, ZoneInfo] = {}
    subjects = dict(ctx.session.execute(select(Course.id, Course.subject)).all())
    students = _students_by_class(ctx, list(classes))
    expanded = []
    # A term repeats a few rules over many classes: each distinct rule is expanded, classified and
    # checked against the policy once (the occurrences are immutable, so the classes share them).
    seen: dict[tuple[Any, ...], tuple[list[Any], list[Any]]] = {}
    for data in specs:
        klass = classes.get(data["class_id"])
        if klass is None:
            raise InvalidInput(f"no class {data['class_id']}", {"class_id": [f"no class {data['class_id']} in this tenant"]})
        if klass.campus_id not in tzs:
            tzs[klass.campus_id] = tz_of(ctx, klass.campus_id)
        tz = tzs[klass.campus_id]
        key = (data["rrule"], data["start"], data["duration_minutes"], tz.key, tuple(sorted(_days(data).items())),
               tuple(sorted(data.get("skip_dates") or ())), klass.online, bool(subjects.get(klass.course_id)))
        if key not in seen:
            occ = occurrences(ctx, klass, data, tz)
            refused = [o for o in occ if o.action == "refuse"]
            if refused:
                days = ", ".join(o.local.date().isoformat() for o in refused[:10])
                raise InvalidInput(
                    "the holiday calendar does not know these days yet",
                    {"unknown_days": [f"unknown (not yet announced): {days}; choose skip or keep"]},
                )
            kept = [o for o in occ if o.action == "keep"]
            seen[key] = (occ, kept)
            if not klass.online:  # an online class's check also looks at its teacher's other lessons
                policy.check_lessons(ctx, kept, tz, online=False, subject=key[-1])
        occ, kept = seen[key]
        if klass.online:
            policy.check_lessons(ctx, kept, tz, online=True, subject=key[-1])
        expanded.append((data, klass, occ, kept))
    now = ctx.now()
    series_ids = list(ctx.session.scalars(insert(Series).returning(Series.id, sort_by_parameter_order=True), [
        {"tenant_id": ctx.tenant.id, "class_id": klass.id, "rrule": data["rrule"], "start_local": data["start"],
         "duration_minutes": data["duration_minutes"], "timezone": tzs[klass.campus_id].key, "created_at": now,
         "options": {k: data.get(k, "skip") for k in ("holidays", "makeup_workdays")}
         | {"unknown_days": data.get("unknown_days", "refuse"),
            "skip_dates": [d.isoformat() for d in data.get("skip_dates") or ()]}}
        for data, klass, _, _ in expanded
    ]))
    planned = [p for (_, klass, _, kept), sid in zip(expanded, series_ids, strict=True)
               for p in _planned(klass, kept, students.get(klass.id, []), sid)]
    booking.place_series(ctx, planned, series_ids)
    return [{"id": sid, "class_id": klass.id, "rrule": data["rrule"], "start": data["start"],
             "duration_minutes": data["duration_minutes"], "timezone": tzs[klass.campus_id].key,
             "lessons": len(kept), "skipped": [o.out() for o in occ if o.action != "keep"]}
            for (data, klass, occ, kept), sid in zip(expanded, series_ids, strict=True)]


def _students_by_class(ctx: HookContext, class_ids: Sequence[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for class_id, lead_id in ctx.session.execute(
        select(Enrolment.class_id, Enrolment.lead_id).where(Enrolment.class_id.in_(class_ids))
        .order_by(Enrolment.class_id, Enrolment.lead_id)
    ):
        out.setdefault(class_id, []).append(lead_id)
    return out


def generate_term(ctx: HookContext, class_ids: Sequence[int], data: dict[str, Any],
                  progress: Callable[[int], Any] | None = None) -> tuple[int, int]:
    """One series per class with the same rule (a term), as one batch; returns (series, lessons)."""
    out = create_many(ctx, [{**data, "class_id": class_id} for class_id in class_ids])
    if progress:
        progress(len(class_ids))
    return len(out), sum(x["lessons"] for x in out)


# --- lessons -------------------------------------------------------------------------------------

def lesson_out(lesson: Lesson, students: Sequence[int]) -> dict[str, Any]:
    return {
        "id": lesson.id, "class_id": lesson.class_id, "series_id": lesson.series_id,
        "recurrence_id": lesson.recurrence_id, "starts_at": lesson.starts_at, "ends_at": lesson.ends_at,
        "teacher_id": lesson.teacher_id, "room_id": lesson.room_id, "kind": lesson.kind, "status": lesson.status,
        "reason": lesson.reason, "makeup_of": lesson.makeup_of, "hours": str(lesson.hours),
        "online": lesson.online, "students": list(students),
    }


def _room_fits(ctx: HookContext, room_id: int | None, seats: int, field: str = "room_id") -> None:
    if room_id is None:
        return
    room = get(ctx, Room, room_id, "room", field=field)
    if seats > room.capacity:
        raise InvalidInput("over the room's capacity", {field: [f"room {room_id} seats {room.capacity}, "
                                                                f"the lesson has {seats} students"]})


def create_lesson(ctx: HookContext, data: dict[str, Any], *, kind: str = "regular", makeup_of: int | None = None,
                  extra_students: Sequence[int] = ()) -> Lesson:
    klass = get(ctx, Klass, data["class_id"], "class", field="class_id")
    room_id = data.get("room_id") or klass.room_id
    students = [*class_students(ctx, klass.id), *(s for s in extra_students)]
    _room_fits(ctx, room_id if not klass.online else None, len(students))
    p = Planned(klass.id, data["starts_at"], data["ends_at"], klass.teacher_id, room_id, klass.hours_per_lesson,
                students, None, None, kind, klass.online, makeup_of)
    course = ctx.session.get(Course, klass.course_id)
    policy.check_lessons(ctx, [p], tz_of(ctx, klass.campus_id), online=klass.online,
                         subject=bool(course and course.subject))
    [lesson_id] = booking.place(ctx, [p])
    for s in extra_students:
        ctx.session.execute(insert(Participant), [{"tenant_id": ctx.tenant.id, "lesson_id": lesson_id,
                                                    "lead_id": s, "role": kind}])
    return ctx.session.get(Lesson, lesson_id)  # type: ignore[no-any-return]


def edit(ctx: HookContext, lesson_id: int, data: dict[str, Any]) -> list[Lesson]:
    """Edit this lesson, this and the following of its series, or all future ones; checked again as one batch.

    A new start moves each lesson by the same wall-clock shift in the campus's
    time; a teacher change for ``all`` touches only lessons not yet started,
    so past attendance keeps its teacher. Recurrence ids never change.
    """
    lesson = get(ctx, Lesson, lesson_id, "lesson")
    if lesson.status != "scheduled":
        raise Conflict(f"lesson {lesson_id} is {lesson.status}")
    klass = ctx.session.get(Klass, lesson.class_id)
    assert klass is not None
    tz = tz_of(ctx, klass.campus_id)
    scope = data["scope"]
    if scope == "this" or lesson.series_id is None:
        lessons = [lesson]
    else:
        q = select(Lesson).where(Lesson.series_id == lesson.series_id, Lesson.status == "scheduled",
                                 Lesson.starts_at >= ctx.now())
        if scope == "following":
            q = q.where(Lesson.starts_at >= lesson.starts_at)
        lessons = list(ctx.session.scalars(q.order_by(Lesson.starts_at).with_for_update()))
        if lesson not in lessons:
            lessons.append(lesson)
    if data.get("teacher_id") is not None:
        teacher = ctx.session.get(Teacher, data["teacher_id"])
        if teacher is None or not teacher.active:
            raise InvalidInput("not a teacher", {"teacher_id": [f"user {data['teacher_id']} is not an active teacher"]})
    students = booking.students_of(ctx, lessons)
    if data.get("room_id") is not None:
        _room_fits(ctx, data["room_id"], max((len(v) for v in students.values()), default=0))
    shift = None
    if data.get("starts_at") is not None:
        old_local = lesson.starts_at.astimezone(tz).replace(tzinfo=None)
        new_local = data["starts_at"].astimezone(tz).replace(tzinfo=None)
        shift = new_local - old_local
    # the lessons change in the session only: retake writes them in a savepoint, where the exclusion constraints
    # check them and a clash becomes a 409 (an autoflush before it would be an error instead)
    with ctx.session.no_autoflush:
        for x in lessons:
            length = (timedelta(minutes=data["duration_minutes"]) if data.get("duration_minutes")
                      else x.ends_at - x.starts_at)
            if shift is not None:
                local = x.starts_at.astimezone(tz).replace(tzinfo=None) + shift
                x.starts_at = local.replace(tzinfo=tz).astimezone(lesson.starts_at.tzinfo)
            x.ends_at = x.starts_at + length
            if data.get("teacher_id") is not None:
                x.teacher_id = data["teacher_id"]
            if data.get("room_id") is not None:
                x.room_id = data["room_id"]
            if data.get("reason"):
                x.reason = data["reason"]
        course = ctx.session.get(Course, klass.course_id)
        policy.check_lessons(ctx, lessons, tz, online=klass.online, subject=bool(course and course.subject))
    booking.retake(ctx, lessons, students)
    return sorted(lessons, key=lambda x: x.starts_at)


def cancel(ctx: HookContext, lesson_id: int, reason: str) -> Lesson:
    """Cancel a lesson: its slot is free again; attendance already taken stays (and its charges)."""
    lesson = get(ctx, Lesson, lesson_id, "lesson")
    done = ctx.session.execute(
        update(Lesson).where(Lesson.id == lesson_id, Lesson.status == "scheduled")
        .values(status="cancelled", reason=reason).execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"lesson {lesson_id} is already cancelled")
    booking.release(ctx, [lesson_id])
    ctx.session.refresh(lesson)
    return lesson


def list_lessons(ctx: HookContext, args: dict[str, Any]) -> Any:
    from .models import Busy

    q = select(Lesson)
    if args.get("teacher_id"):
        q = q.where(Lesson.teacher_id == args["teacher_id"])
    if args.get("room_id"):
        q = q.where(Lesson.room_id == args["room_id"])
    if args.get("class_id"):
        q = q.where(Lesson.class_id == args["class_id"])
    if args.get("campus_id"):
        q = q.where(Lesson.class_id.in_(select(Klass.id).where(Klass.campus_id == args["campus_id"])))
    if args.get("lead_id"):
        lead = args["lead_id"]
        q = q.where(
            Lesson.class_id.in_(select(Enrolment.class_id).where(Enrolment.lead_id == lead))
            | Lesson.id.in_(select(Participant.lesson_id).where(Participant.lead_id == lead))
            | Lesson.id.in_(select(Busy.lesson_id).where(Busy.resource == "student", Busy.resource_id == lead))
        )
    if args.get("starts_from"):
        q = q.where(Lesson.starts_at >= args["starts_from"])
    if args.get("starts_before"):
        q = q.where(Lesson.starts_at < args["starts_before"])
    if not args.get("include_cancelled"):
        q = q.where(Lesson.status == "scheduled")
    return q


def free_slots(ctx: HookContext, args: dict[str, Any]) -> list[dict[str, datetime]]:
    """Start times in the campus's working window when the teacher, the student and the room are all free."""
    tz = tz_of(ctx, args["campus_id"])
    if args.get("room_id"):
        room = get(ctx, Room, args["room_id"], "room", field="room_id")
        if room.campus_id != args["campus_id"]:
            raise InvalidInput("room of another campus", {"room_id": ["is not a room of this campus"]})
    keys = [("teacher", args["teacher_id"])]
    if args.get("lead_id"):
        keys.append(("student", args["lead_id"]))
    if args.get("room_id"):
        keys.append(("room", args["room_id"]))
    lo = datetime.combine(args["date_from"], time(0), tz)
    hi = datetime.combine(args["date_to"] + timedelta(days=1), time(0), tz)
    busy = [(r.starts_at, r.ends_at) for res, rid in keys for r in booking.taken(ctx, res, [rid], lo, hi)]
    length, step = timedelta(minutes=args["duration_minutes"]), timedelta(minutes=args["step_minutes"])
    h0, m0 = (int(x) for x in args["day_start"].split(":"))
    h1, m1 = (int(x) for x in args["day_end"].split(":"))
    out: list[dict[str, datetime]] = []
    day: date = args["date_from"]
    now = ctx.now()
    while day <= args["date_to"] and len(out) < args["limit"]:
        at = datetime.combine(day, time(h0, m0), tz)
        close = datetime.combine(day, time(h1, m1), tz)
        while at + length <= close and len(out) < args["limit"]:
            end = at + length
            if at >= now and not any(s < end and at < e for s, e in busy):
                out.append({"starts_at": at, "ends_at": end})
            at += step
        day += timedelta(days=1)
    return out
