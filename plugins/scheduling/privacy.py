"""``scheduling``'s part of privacy requests: what it holds about a person, and erasing it.

Per lead (a student) the plugin holds its student row, class enrolments,
class-hour accounts with their ledger, roll-call records, seats in lessons
(trials, makeups) with their busy rows, trials and student feed tokens. It
holds no name, phone or free text of the person: those are the core's lead
and are anonymised by the core before ``person_erased`` arrives.

Erasure (idempotent, run whether or not the plugin is on for the tenant)
takes the person out of the schedule from now on and leaves the records of
what happened: the student's feed tokens are revoked (a feed URL is the
person's timetable), the enrolments end (so no future lesson charges the
account), and the seats and busy rows of lessons not yet started are freed.
Accounts, the ledger, attendance and trials stay: they are the money and the
lessons given (the core keeps deals and refunds the same way), and they
refer to the lead's id only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update

from pelago.plugin import HookContext

from .models import Account, Attendance, Busy, Enrolment, Entry, FeedToken, Lesson, Participant, Student, Trial


def export(ctx: HookContext, lead_ids: Sequence[int]) -> dict[str, Any] | None:
    """The students' enrolments, accounts with their ledger, attendance, seats, trials and feeds; ``None`` if none."""
    if not lead_ids:
        return None
    s = ctx.session
    ids = list(lead_ids)
    students = s.scalars(select(Student).where(Student.lead_id.in_(ids)).order_by(Student.lead_id)).all()
    if not students:
        return None
    accounts = s.scalars(select(Account).where(Account.lead_id.in_(ids)).order_by(Account.id)).all()
    entries: dict[int, list[Entry]] = {}
    for e in s.scalars(select(Entry).where(Entry.account_id.in_([a.id for a in accounts])).order_by(Entry.id)):
        entries.setdefault(e.account_id, []).append(e)
    from .ledger import account_out

    return {
        "students": [{"lead_id": x.lead_id, "created_at": x.created_at} for x in students],
        "enrolments": [
            {"class_id": e.class_id, "lead_id": e.lead_id, "account_id": e.account_id, "enrolled_at": e.enrolled_at}
            for e in s.scalars(select(Enrolment).where(Enrolment.lead_id.in_(ids))
                               .order_by(Enrolment.lead_id, Enrolment.class_id))
        ],
        "accounts": [account_out(a, entries.get(a.id, [])) for a in accounts],
        "attendance": [
            {"id": a.id, "lesson_id": a.lesson_id, "lead_id": a.lead_id, "status": a.status, "charged": a.charged,
             "leave_asked_at": a.leave_asked_at, "marked_by": a.marked_by, "marked_at": a.marked_at}
            for a in s.scalars(select(Attendance).where(Attendance.lead_id.in_(ids)).order_by(Attendance.id))
        ],
        "seats": [
            {"lesson_id": p.lesson_id, "lead_id": p.lead_id, "role": p.role, "makeup_of": p.makeup_of}
            for p in s.scalars(select(Participant).where(Participant.lead_id.in_(ids))
                               .order_by(Participant.lesson_id, Participant.lead_id))
        ],
        "trials": [
            {"id": t.id, "lesson_id": t.lesson_id, "lead_id": t.lead_id, "source": t.source, "outcome": t.outcome,
             "deal_id": t.deal_id, "booked_at": t.booked_at, "decided_at": t.decided_at}
            for t in s.scalars(select(Trial).where(Trial.lead_id.in_(ids)).order_by(Trial.id))
        ],
        "feeds": [  # never the token: only its hash is kept
            {"id": f.id, "lead_id": f.owner_id, "created_at": f.created_at, "revoked_at": f.revoked_at}
            for f in s.scalars(select(FeedToken).where(FeedToken.kind == "student", FeedToken.owner_id.in_(ids))
                               .order_by(FeedToken.id))
        ],
    }


def erase(ctx: HookContext, lead_ids: Sequence[int]) -> None:
    """Take ``lead_ids`` out of the schedule from now on (see the module's docstring); a second run changes nothing."""
    if not lead_ids:
        return
    s = ctx.session
    ids = list(lead_ids)
    now = ctx.now()
    bulk = {"synchronize_session": False}
    s.execute(update(FeedToken).where(FeedToken.kind == "student", FeedToken.owner_id.in_(ids),
                                      FeedToken.revoked_at.is_(None))
              .values(revoked_at=now).execution_options(**bulk))
    future = select(Lesson.id).where(Lesson.starts_at > now)
    s.execute(delete(Busy).where(Busy.resource == "student", Busy.resource_id.in_(ids), Busy.lesson_id.in_(future))
              .execution_options(**bulk))
    s.execute(delete(Participant).where(Participant.lead_id.in_(ids), Participant.lesson_id.in_(future))
              .execution_options(**bulk))
    s.execute(delete(Enrolment).where(Enrolment.lead_id.in_(ids)).execution_options(**bulk))
    s.flush()
