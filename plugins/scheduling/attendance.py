"""Roll-call, leave, makeups and automatic consumption: how attendance moves the ledger.

Each (lesson, student) has one attendance record (unique). Present, late and
absent are charged; leave is not when asked ``leave_free_hours`` before the
lesson (a setting). The record's ``charged`` flag and ``generation`` say
whether the consumption of ``(record, generation)`` stands: changing a
charged record to something not charged, or undoing it, writes the reversal
of that generation and moves to the next, so charge → reverse → charge
again are three distinct, unique ledger lines. The automatic consumption
after a lesson's end only fills in students with no record, so it and a
teacher's roll-call never both charge.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from pelago.plugin import Conflict, HookContext, InvalidInput, insert_ignoring_conflict

from . import booking, ledger
from .models import Account, Attendance, Enrolment, Lesson, Participant

PLUGIN = "scheduling"
CHARGED = frozenset({"present", "late", "absent"})


def charged(ctx: HookContext, status: str | None, leave_asked_at: datetime | None, lesson: Lesson) -> bool:
    if status in CHARGED:
        return True
    if status == "leave":
        ahead = timedelta(hours=ctx.settings(PLUGIN)["leave_free_hours"])
        return leave_asked_at is None or leave_asked_at > lesson.starts_at - ahead
    return False


def _account_for(ctx: HookContext, lesson: Lesson, lead_id: int) -> int | None:
    """The enrolment's account, else the student's open account that expires first with hours left."""
    account_id = ctx.session.scalar(
        select(Enrolment.account_id).where(Enrolment.class_id == lesson.class_id, Enrolment.lead_id == lead_id)
    )
    if account_id is not None:
        return account_id  # type: ignore[no-any-return]
    return ctx.session.scalar(  # type: ignore[no-any-return]
        select(Account.id).where(
            Account.lead_id == lead_id, Account.status == "open", Account.expires_at > ctx.now(),
            Account.purchased_hours + Account.gift_hours - Account.consumed_purchased - Account.consumed_gift
            >= lesson.hours,
        ).order_by(Account.expires_at, Account.id).limit(1)
    )


def _record(ctx: HookContext, lesson: Lesson, lead_id: int) -> Attendance:
    """The attendance record of (lesson, student), made once, locked for this transaction."""
    insert_ignoring_conflict(ctx.session, Attendance.__table__, {
        "tenant_id": ctx.tenant.id, "lesson_id": lesson.id, "lead_id": lead_id, "status": None,
        "charged": False, "generation": 0, "marked_at": ctx.now(),
    }, ["tenant_id", "lesson_id", "lead_id"], None)
    row = ctx.session.scalars(
        select(Attendance).where(Attendance.lesson_id == lesson.id, Attendance.lead_id == lead_id)
        .with_for_update().execution_options(populate_existing=True)
    ).one()
    return row


def students(ctx: HookContext, lesson: Lesson) -> set[int]:
    return set(booking.students_of(ctx, [lesson])[lesson.id])


def mark(ctx: HookContext, lesson_id: int, marks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Take roll-call (or change or undo it) for some of a lesson's students; the ledger follows."""
    from .schedule import get

    lesson = get(ctx, Lesson, lesson_id, "lesson")
    if lesson.status != "scheduled":
        raise Conflict(f"lesson {lesson_id} is {lesson.status}")
    if lesson.starts_at > ctx.now() + timedelta(hours=1):
        raise InvalidInput("roll-call before the lesson", {"lesson_id": ["starts more than an hour from now"]})
    members = students(ctx, lesson)
    seen: set[int] = set()
    for i, m in enumerate(marks):
        if m["lead_id"] not in members:
            raise InvalidInput("not in this lesson", {"marks": {str(i): {"lead_id": ["not a student of this lesson"]}}})
        if m["lead_id"] in seen:
            raise InvalidInput("marked twice", {"marks": {str(i): {"lead_id": ["marked twice"]}}})
        seen.add(m["lead_id"])
    trials = set(ctx.session.scalars(
        select(Participant.lead_id).where(Participant.lesson_id == lesson.id, Participant.role == "trial")
    ))
    out = []
    for m in sorted(marks, key=lambda m: m["lead_id"]):  # one lock order for concurrent roll-calls
        done = _apply(ctx, lesson, m["lead_id"], m["status"], free=m["lead_id"] in trials)
        assert done is not None
        out.append(done)
    return out


def _apply(ctx: HookContext, lesson: Lesson, lead_id: int, status: str | None, *, free: bool = False,
           actor: int | None = -1, only_unmarked: bool = False) -> dict[str, Any] | None:
    row = _record(ctx, lesson, lead_id)
    if only_unmarked and row.status is not None:
        return None  # a person took the roll-call meanwhile: theirs stands
    want = not free and charged(ctx, status, row.leave_asked_at, lesson)
    account_id = None
    remaining = None
    if row.charged and not want:
        back = ledger.reverse(ctx, row.id, row.generation, note=f"roll-call changed to {status or 'undone'}")
        row.generation += 1
        row.charged = False
        if back:
            account_id, remaining = back.account_id, back.remaining
    elif want and not row.charged:
        account_id = _account_for(ctx, lesson, lead_id)
        if account_id is None:
            raise Conflict(f"student {lead_id} has no open account with {lesson.hours} hours for lesson {lesson.id}",
                           {"lead_id": ["no account with enough hours"]})
        got = ledger.consume(ctx, account_id, lesson.hours, attendance_id=row.id, generation=row.generation,
                             lesson_id=lesson.id, note=f"{status}")
        row.charged = True
        remaining = got.remaining
    row.status = status
    row.marked_at = ctx.now()
    row.marked_by = ctx.actor.user_id if (actor == -1 and ctx.actor) else None
    ctx.session.flush()
    return {"id": row.id, "lesson_id": lesson.id, "lead_id": lead_id, "status": row.status, "charged": row.charged,
            "account_id": account_id, "remaining_hours": None if remaining is None else str(remaining)}


def ask_leave(ctx: HookContext, lesson_id: int, lead_id: int) -> dict[str, Any]:
    """A leave request: recorded now, so its distance to the lesson decides whether it is charged."""
    from .schedule import get

    lesson = get(ctx, Lesson, lesson_id, "lesson")
    if lead_id not in students(ctx, lesson):
        raise InvalidInput("not in this lesson", {"lead_id": ["not a student of this lesson"]})
    row = _record(ctx, lesson, lead_id)
    if row.leave_asked_at is None:
        row.leave_asked_at = ctx.now()
    ctx.session.flush()
    done = _apply(ctx, lesson, lead_id, "leave")
    assert done is not None
    return done


def makeup(ctx: HookContext, lead_id: int, missed_id: int, lesson_id: int) -> dict[str, Any]:
    """Book a student who missed ``missed_id`` into ``lesson_id`` (busy there; 409 on a clash)."""
    from .schedule import get

    missed = get(ctx, Lesson, missed_id, "lesson", field="missed_lesson_id")
    target = get(ctx, Lesson, lesson_id, "lesson", field="lesson_id")
    if lead_id not in students(ctx, missed):
        raise InvalidInput("not in the missed lesson", {"lead_id": ["was not a student of the missed lesson"]})
    if target.status != "scheduled":
        raise Conflict(f"lesson {lesson_id} is {target.status}")
    if lead_id in students(ctx, target):
        raise Conflict(f"student {lead_id} is already in lesson {lesson_id}")
    from sqlalchemy import insert

    ctx.session.execute(insert(Participant), [{"tenant_id": ctx.tenant.id, "lesson_id": target.id,
                                               "lead_id": lead_id, "role": "makeup"}])
    booking.add_students(ctx, [target.id], lead_id)
    if target.makeup_of is None and target.kind == "makeup":
        target.makeup_of = missed.id
    return {"lesson_id": target.id, "missed_lesson_id": missed.id, "lead_id": lead_id}


def auto_consume(ctx: HookContext, limit: int = 200) -> int:
    """Charge enrolled students with no roll-call as present, for lessons ended a while ago (a setting)."""
    s = ctx.settings(PLUGIN)
    if not s["auto_consume"]:
        return 0
    before = ctx.now() - timedelta(minutes=s["auto_consume_after_minutes"])
    lessons = list(ctx.session.scalars(
        select(Lesson).where(Lesson.status == "scheduled", Lesson.auto_consumed.is_(False), Lesson.ends_at <= before,
                             Lesson.kind != "trial")
        .order_by(Lesson.ends_at, Lesson.id).limit(limit)
    ))
    done = 0
    for lesson in lessons:
        marked = set(ctx.session.scalars(select(Attendance.lead_id).where(Attendance.lesson_id == lesson.id)))
        for lead_id in sorted(students(ctx, lesson) - marked):
            try:
                with ctx.session.begin_nested():
                    if _apply(ctx, lesson, lead_id, "present", actor=None, only_unmarked=True):
                        done += 1
            except Conflict:
                pass  # no hours: left for a person to settle
        ctx.session.execute(update(Lesson).where(Lesson.id == lesson.id).values(auto_consumed=True)
                            .execution_options(synchronize_session=False))
    return done


