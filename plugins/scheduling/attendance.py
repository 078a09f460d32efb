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

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, text, update

from pelago.plugin import Conflict, HookContext, InvalidInput, among, dialect_name, insert_ignoring_conflict

from . import arrays, booking, ledger
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
    return settle(ctx, [Item(lesson, m["lead_id"], m["status"], m["lead_id"] in trials) for m in marks])


class Item(NamedTuple):
    """One roll-call mark to settle (a named tuple: a batch makes a thousand)."""

    lesson: Lesson
    lead_id: int
    status: str | None
    free: bool = False  # a trial seat: never charged


def settle(ctx: HookContext, items: Sequence[Item]) -> list[dict[str, Any]]:
    """Roll-call marks of any number of lessons, set-based: a few statements for the whole batch.

    Records are made (one INSERT … ON CONFLICT DO NOTHING) and locked in one
    order; charges go through :func:`.ledger.consume_many` (one conditional
    UPDATE per account, one INSERT of lines); reversals one by one (rare).
    If an account changed between read and update, the batch is taken again
    one mark at a time, which waits for the other writer.
    """
    if not items:
        return []
    try:
        with ctx.session.begin_nested():
            return _settle(ctx, items)
    except ledger.Contended:
        out = []
        for i in sorted(items, key=lambda i: (i.lesson.id, i.lead_id)):
            done = _apply(ctx, i.lesson, i.lead_id, i.status, free=i.free)
            assert done is not None
            out.append(done)
        return out


def _settle(ctx: HookContext, items: Sequence[Item]) -> list[dict[str, Any]]:
    session = ctx.session
    t, now = ctx.tenant.id, ctx.now()
    by = ctx.actor.user_id if ctx.actor else None
    # each lesson's attributes read once (an ORM attribute costs more than a tuple's): a batch is a thousand marks
    # of a few dozen lessons
    lessons = {i.lesson.id: i.lesson for i in items}
    keys = [(i.lesson.id, i.lead_id) for i in items]
    order = sorted(range(len(items)), key=keys.__getitem__)  # one order for locks and writes: (lesson, student)
    table = Attendance.__table__
    session.flush()  # the reads below go past the ORM (Core, on its connection): nothing may be pending
    existing = {(r.lesson_id, r.lead_id): r for r in session.connection().execute(
        select(table.c.id, table.c.lesson_id, table.c.lead_id, table.c.status, table.c.charged, table.c.generation,
               table.c.leave_asked_at)
        .where(table.c.tenant_id == t, among(session, table.c.lesson_id, sorted(lessons)))
        .order_by(table.c.id).with_for_update()
    ).all()}
    out: list[dict[str, Any]] = [{}] * len(items)
    charges: list[tuple[int, int, int]] = []  # (item's position, attendance id, generation)
    # new records (the usual case): written once, with their final status, in one statement
    fresh = [n for n in order if keys[n] not in existing] if existing else order
    if fresh:
        wants = [_charged_new(ctx, items[n]) for n in fresh]
        made = _insert_records(ctx, [(keys[n], items[n].status, w) for n, w in zip(fresh, wants, strict=True)],
                               by, now)
        if len(made) != len(fresh):
            raise ledger.Contended()  # someone made one of them meanwhile: take the careful path
        for n, want in zip(fresh, wants, strict=True):
            (lesson_id, lead_id), rid = keys[n], made[keys[n]]
            out[n] = {"id": rid, "lesson_id": lesson_id, "lead_id": lead_id, "status": items[n].status,
                      "charged": want, "account_id": None, "remaining_hours": None}
            if want:
                charges.append((n, rid, 0))
    # records that exist: changed or undone roll-calls
    changed = []
    for n in order if existing else ():
        i, key = items[n], keys[n]
        row = existing.get(key)
        if row is None:
            continue
        want = not i.free and charged(ctx, i.status, row.leave_asked_at, i.lesson)
        generation, is_charged = row.generation, row.charged
        account_id = remaining = None
        if is_charged and not want:
            back = ledger.reverse(ctx, row.id, generation, note=f"roll-call changed to {i.status or 'undone'}")
            generation, is_charged = generation + 1, False
            if back:
                account_id, remaining = back.account_id, back.remaining
        elif want and not is_charged:
            charges.append((n, row.id, generation))
            is_charged = True
        changed.append({"rid": row.id, "status": i.status, "charged": is_charged, "generation": generation,
                        "marked_at": now, "marked_by": by})
        out[n] = {"id": row.id, "lesson_id": key[0], "lead_id": key[1], "status": i.status,
                  "charged": is_charged, "account_id": account_id,
                  "remaining_hours": None if remaining is None else str(remaining)}
    if changed:
        session.connection().execute(
            update(table).where(table.c.id == bindparam("rid"))
            .values(status=bindparam("status"), charged=bindparam("charged"), generation=bindparam("generation"),
                    marked_at=bindparam("marked_at", type_=table.c.marked_at.type), marked_by=bindparam("marked_by")),
            changed,
        )
    if charges:
        accounts, known = _accounts_for(ctx, lessons, [keys[n] for n, _, _ in charges])
        hours = {lesson_id: lesson.hours for lesson_id, lesson in lessons.items()}
        asked = []
        for n, rid, generation in charges:
            lesson_id, lead_id = keys[n]
            account_id = accounts.get(keys[n])
            if account_id is None:
                raise Conflict(f"student {lead_id} has no open account with {hours[lesson_id]} hours for lesson "
                               f"{lesson_id}", {"lead_id": ["no account with enough hours"]})
            asked.append(ledger.Want(account_id, hours[lesson_id], rid, generation, lesson_id, items[n].status or ""))
        for (n, _, _), got in zip(charges, ledger.consume_many(ctx, asked, known), strict=True):
            record = out[n]
            record["charged"], record["account_id"] = True, got.account_id
            record["remaining_hours"] = str(got.remaining)
    for obj in list(session.identity_map.values()):  # written past the ORM: loaded copies are stale
        if isinstance(obj, (Attendance, Account)):
            session.expire(obj)
    return out


def _charged_new(ctx: HookContext, item: Item) -> bool:
    """Whether a new record of ``item`` is charged (no leave asked before it)."""
    if item.free:
        return False
    return item.status in CHARGED or charged(ctx, item.status, None, item.lesson)


def _insert_records(ctx: HookContext, rows: Sequence[tuple[tuple[int, int], str | None, bool]], by: int | None,
                    now: Any) -> dict[tuple[int, int], int]:
    """New attendance records ``((lesson, student), status, charged)`` with their final status, one statement;
    their ids by (lesson, student).

    On PostgreSQL the rows travel as arrays (``INSERT … SELECT FROM unnest``, each a text literal,
    :mod:`.arrays`):
    one short statement whatever the batch, instead of a VALUES list the
    driver must rewrite per batch. Rows someone else made meanwhile are not
    returned (``ON CONFLICT DO NOTHING``).
    """
    session = ctx.session
    table = Attendance.__table__
    if dialect_name(session) == "postgresql":
        made = session.execute(text(
            "INSERT INTO scheduling_attendance (tenant_id, lesson_id, lead_id, status, charged, generation,"
            " leave_asked_at, marked_by, marked_at)"
            " SELECT :t, u.l, u.p, u.s, u.c, 0, NULL, :by, :now"
            " FROM unnest(CAST(:lessons AS bigint[]), CAST(:leads AS bigint[]), CAST(:statuses AS text[]),"
            "             CAST(:charged AS boolean[])) AS u(l, p, s, c)"
            " ON CONFLICT (tenant_id, lesson_id, lead_id) DO NOTHING RETURNING id, lesson_id, lead_id"
        ).bindparams(bindparam("now", type_=table.c.marked_at.type)), {
            "t": ctx.tenant.id, "by": by, "now": now, "lessons": arrays.numbers(k[0] for k, _, _ in rows),
            "leads": arrays.numbers(k[1] for k, _, _ in rows), "statuses": arrays.texts(s for _, s, _ in rows),
            "charged": arrays.plain(c for _, _, c in rows),
        }).all()
    else:
        ins = _insert(session)(table).on_conflict_do_nothing(index_elements=["tenant_id", "lesson_id", "lead_id"])
        made = session.execute(ins.returning(table.c.id, table.c.lesson_id, table.c.lead_id), [
            {"tenant_id": ctx.tenant.id, "lesson_id": k[0], "lead_id": k[1], "status": s, "charged": c,
             "generation": 0, "leave_asked_at": None, "marked_by": by, "marked_at": now} for k, s, c in rows
        ]).all()
    return {(lesson_id, lead_id): rid for rid, lesson_id, lead_id in made}


def _insert(session: Any) -> Any:
    if dialect_name(session) == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    return insert


def _accounts_for(ctx: HookContext, lessons: Mapping[int, Lesson], pairs: Sequence[tuple[int, int]]
                  ) -> tuple[dict[tuple[int, int], int], dict[int, Any]]:
    """For each (lesson, student): the enrolment's account, else :func:`_account_for`; and the enrolments'
    accounts as read (:func:`.ledger.account_columns`, by id) for :func:`.ledger.consume_many`.

    One query: the classes' enrolments with their accounts, so the accounts the
    roll-call charges are read in the same round trip as the enrolments naming them.
    """
    class_of = {lesson_id: lesson.class_id for lesson_id, lesson in lessons.items()}
    e, a = Enrolment.__table__.c, Account.__table__.c
    enrolled: dict[tuple[int, int], int] = {}
    known: dict[int, Any] = {}
    for row in ctx.session.connection().execute(
        select(*ledger.account_columns(ctx.session), e.class_id, e.lead_id)
        .join_from(Enrolment.__table__, Account.__table__, (a.tenant_id == e.tenant_id) & (a.id == e.account_id))
        .where(e.tenant_id == ctx.tenant.id, among(ctx.session, e.class_id, sorted(set(class_of.values()))))
    ).all():
        enrolled[(row[-2], row[-1])] = row[0]  # by position: a Row's attribute costs ten times its index
        known[row[0]] = row
    out = {}
    for lesson_id, lead_id in pairs:
        account_id = enrolled.get((class_of[lesson_id], lead_id)) or _account_for(ctx, lessons[lesson_id], lead_id)
        if account_id is not None:
            out[(lesson_id, lead_id)] = account_id
    return out, known


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
                                               "lead_id": lead_id, "role": "makeup", "makeup_of": missed.id}])
    booking.add_students(ctx, [target.id], lead_id)
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


