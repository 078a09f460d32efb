"""Trial lessons (试听) booked for CRM leads, their outcome written back to the lead, and conversion rates.

The outcome goes through the core like a rep's work would: an activity on the
lead (``log_activities``, automatic: it does not count as a rep's follow-up)
and a stage change (``change_stage``, so ``check_stage_change`` vetoes apply):
attended → qualified, no-show → contacted, not interested → lost, converted →
a deal for the package sold (``record_deal``: stage won, ``deal_won``), which
opens the student's account.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select

from pelago.plugin import (
    Conflict,
    HookContext,
    InvalidInput,
    Lead,
    NewActivity,
    change_stage,
    log_activities,
)

from . import booking, ledger, schedule
from .models import Klass, Lesson, Participant, Trial

STAGE = {"attended": "qualified", "no_show": "contacted", "not_interested": "lost"}
NOTE = {"attended": "attended the trial lesson", "no_show": "did not come to the trial lesson",
        "not_interested": "not interested after the trial lesson", "converted": "bought after the trial lesson"}


def book(ctx: HookContext, data: dict[str, Any]) -> Trial:
    """A trial for a lead: a seat in an existing lesson, or a new lesson of a trial class."""
    lead_id = data["lead_id"]
    lead = ctx.session.scalar(select(Lead).where(Lead.id == lead_id))
    if lead is None:
        raise InvalidInput("unknown lead", {"lead_id": [f"no lead {lead_id} in this tenant"]})
    ledger.ensure_student(ctx, lead_id)
    if data.get("lesson_id") is not None:
        lesson = schedule.get(ctx, Lesson, data["lesson_id"], "lesson", field="lesson_id")
        if lesson.status != "scheduled":
            raise Conflict(f"lesson {lesson.id} is {lesson.status}")
        if lead_id in booking.students_of(ctx, [lesson])[lesson.id]:
            raise Conflict(f"lead {lead_id} is already in lesson {lesson.id}")
        klass = ctx.session.get(Klass, lesson.class_id)
        assert klass is not None
        seats = len(booking.students_of(ctx, [lesson])[lesson.id]) + 1
        if seats > klass.capacity:
            raise Conflict(f"lesson {lesson.id} is full ({klass.capacity})", {"lesson_id": ["full"]})
        ctx.session.execute(insert(Participant), [{"tenant_id": ctx.tenant.id, "lesson_id": lesson.id,
                                                   "lead_id": lead_id, "role": "trial"}])
        booking.add_students(ctx, [lesson.id], lead_id)
    else:
        klass = schedule.get(ctx, Klass, data["class_id"], "class", field="class_id")
        if not klass.trial:
            raise InvalidInput("not a trial class", {"class_id": ["is not a trial class"]})
        lesson = schedule.create_lesson(ctx, {"class_id": klass.id, "starts_at": data["starts_at"],
                                              "ends_at": data["ends_at"]}, kind="trial", extra_students=[lead_id])
    trial = Trial(lesson_id=lesson.id, lead_id=lead_id, source=lead.source, booked_at=ctx.now())
    ctx.session.add(trial)
    ctx.session.flush()
    log_activities(ctx, [NewActivity(lead_id, "note", f"trial lesson booked: lesson {lesson.id} at "
                                     f"{lesson.starts_at.isoformat()}")])
    return trial


def decide(ctx: HookContext, trial_id: int, outcome: str, package_id: int | None, note: str) -> dict[str, Any]:
    """Record the outcome: an activity and a stage move on the lead; ``converted`` sells the package."""
    trial = schedule.get(ctx, Trial, trial_id, "trial")
    if trial.outcome is not None:
        raise Conflict(f"trial {trial_id} already has its outcome ({trial.outcome})")
    lesson = ctx.session.get(Lesson, trial.lesson_id)
    assert lesson is not None
    text = NOTE[outcome] + (f": {note}" if note else "")
    kind = "visit" if outcome in ("attended", "converted") else "note"
    at = min(ctx.now(), lesson.ends_at) if outcome != "no_show" else ctx.now()
    log_activities(ctx, [NewActivity(trial.lead_id, kind, text, occurred_at=at)])
    account_id = None
    if outcome == "converted":
        if package_id is None:
            raise InvalidInput("which package was sold?", {"package_id": ["required when converted"]})
        from . import sales

        trial.deal_id, account_id = sales.sell(ctx, trial.lead_id, package_id)
    else:
        change_stage(ctx, trial.lead_id, STAGE[outcome],
                     lost_reason="trial lesson: not interested" if outcome == "not_interested" else None)
    trial.outcome = outcome
    trial.decided_at = ctx.now()
    ctx.session.flush()
    return trial_out(trial, account_id)


def trial_out(trial: Trial, account_id: int | None = None) -> dict[str, Any]:
    return {"id": trial.id, "lesson_id": trial.lesson_id, "lead_id": trial.lead_id, "source": trial.source,
            "outcome": trial.outcome, "deal_id": trial.deal_id, "account_id": account_id,
            "booked_at": trial.booked_at, "decided_at": trial.decided_at}


def conversion(ctx: HookContext) -> list[dict[str, Any]]:
    """Trials, decided and converted, by teacher, by course and by the lead's source."""
    rows = ctx.session.execute(
        select(Lesson.teacher_id, Klass.course_id, Trial.source, Trial.outcome, func.count())
        .join(Lesson, Lesson.id == Trial.lesson_id).join(Klass, Klass.id == Lesson.class_id)
        .group_by(Lesson.teacher_id, Klass.course_id, Trial.source, Trial.outcome)
    ).all()
    out = []
    for by, pick in (("teacher", 0), ("course", 1), ("source", 2)):
        acc: dict[Any, list[int]] = {}
        for r in rows:
            t = acc.setdefault(r[pick], [0, 0, 0])
            t[0] += r[4]
            t[1] += r[4] if r[3] is not None else 0
            t[2] += r[4] if r[3] == "converted" else 0
        for key, (n, decided, won) in sorted(acc.items(), key=lambda kv: str(kv[0])):
            out.append({"by": by, "key": None if key is None else str(key), "trials": n, "decided": decided,
                        "converted": won, "rate": f"{won / decided:.4f}" if decided else None})
    return out


