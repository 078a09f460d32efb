"""Scheduling's part of a lead's timeline (the ``lead_timeline`` hook): trial lessons and roll-calls.

Two queries for the lead, each joined to its lessons and their classes
(``scheduling_trial`` by its (lead) key, ``ix_scheduling_attendance_lead``):
a trial is an entry when booked and another when its outcome was set; a
roll-call mark (present, late, leave, absent) is one entry at its marking.
"""

from __future__ import annotations

from sqlalchemy import select

from pelago.plugin import HookContext, TimelineEntry

from .models import Attendance, Klass, Lesson, Trial

OUTCOMES = {"attended": "Trial attended ({klass})", "no_show": "Trial missed ({klass})",
            "converted": "Trial converted ({klass})", "not_interested": "Trial: not interested ({klass})"}
MARKS = {"present": "Present at a lesson ({klass})", "late": "Late for a lesson ({klass})",
         "leave": "On leave from a lesson ({klass})", "absent": "Absent from a lesson ({klass})"}


def entries(ctx: HookContext, lead_id: int) -> list[TimelineEntry]:
    s = ctx.session
    out: list[TimelineEntry] = []
    for booked_at, decided_at, outcome, source, starts_at, klass in s.execute(
            select(Trial.booked_at, Trial.decided_at, Trial.outcome, Trial.source, Lesson.starts_at, Klass.name)
            .join(Lesson, Lesson.id == Trial.lesson_id).join(Klass, Klass.id == Lesson.class_id)
            .where(Trial.lead_id == lead_id).order_by(Trial.id)):
        lesson = starts_at.astimezone(ctx.tenant.tz).strftime("%Y-%m-%d %H:%M")
        out.append(TimelineEntry(booked_at, "trial", "Trial lesson booked ({klass})",
                                 " · ".join(x for x in (lesson, source) if x), {"klass": klass}))
        if outcome and decided_at:
            out.append(TimelineEntry(decided_at, "trial", OUTCOMES.get(outcome, outcome), "", {"klass": klass}))
    for status, marked_at, klass in s.execute(
            select(Attendance.status, Attendance.marked_at, Klass.name)
            .join(Lesson, Lesson.id == Attendance.lesson_id).join(Klass, Klass.id == Lesson.class_id)
            .where(Attendance.lead_id == lead_id, Attendance.status.is_not(None)).order_by(Attendance.id)):
        out.append(TimelineEntry(marked_at, "lesson", MARKS.get(status, status), "", {"klass": klass}))
    return out
