"""Read-only iCalendar feeds (``.ics``) per teacher and per student, behind a revocable token.

``POST /teachers/{id}/feed`` (or ``/students/{lead_id}/feed``) makes a token
and shows it once; only its SHA-256 is stored. ``GET
/api/v1/scheduling/feeds/{token}.ics`` needs no API key (a calendar app
cannot send one): the token is the credential, and a revoked token, or a
tenant that switched scheduling off, gets 404. Each lesson is a ``VEVENT``
with a stable ``UID``; a series' lessons carry ``RECURRENCE-ID`` (their
original start) and a cancelled lesson ``STATUS:CANCELLED``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select, update

from pelago.plugin import (
    Blueprint,
    HookContext,
    NotFound,
    enter_tenant,
    file_response,
    public_route,
    public_session,
)

from .models import Busy, FeedToken, Klass, Lesson, Room

PREFIX = "/api/v1/scheduling"
WINDOW_PAST = timedelta(days=31)
WINDOW_AHEAD = timedelta(days=180)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue(ctx: HookContext, kind: str, owner_id: int) -> dict[str, Any]:
    token = secrets.token_urlsafe(24)
    row = FeedToken(kind=kind, owner_id=owner_id, token_hash=_hash(token), created_at=ctx.now())
    ctx.session.add(row)
    ctx.session.flush()
    return {"id": row.id, "kind": kind, "owner_id": owner_id, "token": token,
            "path": f"{PREFIX}/feeds/{token}.ics"}


def revoke(ctx: HookContext, feed_id: int) -> None:
    done = ctx.session.execute(
        update(FeedToken).where(FeedToken.id == feed_id, FeedToken.revoked_at.is_(None))
        .values(revoked_at=ctx.now()).execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound(f"feed {feed_id} not found (or already revoked)")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _stamp(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _fold(line: str) -> str:
    """RFC 5545 line folding: at most 75 octets a line, continued with a space."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line
    parts: list[str] = []
    cur = b""
    for ch in line:
        b = ch.encode("utf-8")
        if len(cur) + len(b) > (75 if not parts else 74):
            parts.append(cur.decode("utf-8"))
            cur = b""
        cur += b
    parts.append(cur.decode("utf-8"))
    return "\r\n ".join(parts)


def calendar(ctx: HookContext, kind: str, owner_id: int) -> str:
    """The VCALENDAR of a teacher's or a student's lessons from a month ago to half a year ahead."""
    now = ctx.now()
    lo, hi = now - WINDOW_PAST, now + WINDOW_AHEAD
    q = select(Lesson).where(Lesson.starts_at >= lo, Lesson.starts_at < hi)
    if kind == "teacher":
        q = q.where(Lesson.teacher_id == owner_id)
    else:
        q = q.where(Lesson.id.in_(select(Busy.lesson_id).where(Busy.resource == "student",
                                                                Busy.resource_id == owner_id)))
    lessons = list(ctx.session.scalars(q.where(Lesson.status == "scheduled").order_by(Lesson.starts_at)))
    if kind == "student":  # cancelled lessons have no busy rows: list those of the student's classes too
        from .models import Enrolment

        lessons += list(ctx.session.scalars(
            select(Lesson).where(Lesson.status == "cancelled", Lesson.starts_at >= lo, Lesson.starts_at < hi,
                                 Lesson.class_id.in_(select(Enrolment.class_id).where(Enrolment.lead_id == owner_id)))
        ))
    else:
        lessons += list(ctx.session.scalars(q.where(Lesson.status == "cancelled")))
    classes = {k.id: k for k in ctx.session.scalars(select(Klass).where(Klass.id.in_({x.class_id for x in lessons})))}
    rooms = {r.id: r.name for r in ctx.session.scalars(select(Room).where(Room.id.in_(
        {x.room_id for x in lessons if x.room_id is not None})))}
    host = ctx.tenant.slug
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Pelago//scheduling//EN", "CALSCALE:GREGORIAN",
             f"X-WR-CALNAME:{_escape(f'{kind} {owner_id}')}"]
    for x in sorted(lessons, key=lambda x: (x.starts_at, x.id)):
        k = classes.get(x.class_id)
        uid = f"lesson-{x.series_id}@{host}.pelago" if x.series_id else f"lesson-{x.id}@{host}.pelago"
        lines += ["BEGIN:VEVENT", f"UID:{uid}", f"DTSTAMP:{_stamp(now)}", f"DTSTART:{_stamp(x.starts_at)}",
                  f"DTEND:{_stamp(x.ends_at)}", f"SUMMARY:{_escape(k.name if k else 'lesson')}"]
        if x.series_id and x.recurrence_id:
            lines.append(f"RECURRENCE-ID:{_stamp(x.recurrence_id)}")
        if x.room_id in rooms:
            lines.append(f"LOCATION:{_escape(rooms[x.room_id])}")
        if x.status == "cancelled":
            lines.append("STATUS:CANCELLED")
        if x.reason:
            lines.append(f"DESCRIPTION:{_escape(x.reason)}")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "\r\n".join(_fold(line) for line in lines) + "\r\n"


def route(blp: Blueprint) -> None:
    """Add the public feed route to the plugin's blueprint."""

    @blp.route("/feeds/<string:token>.ics", methods=["GET"])
    @blp.doc(
        security=[],
        summary="A teacher's or student's lessons as iCalendar (no API key: the token is the credential)",
        responses={"200": {"description": "the calendar", "content": {"text/calendar": {"schema": {"type": "string"}}}},
                   "404": {"description": "unknown or revoked token, or scheduling off for the tenant"}},
    )
    @public_route
    def feed(token: str) -> Any:
        """A teacher's or student's lessons as iCalendar (no API key: the token is the credential).

        Public: no API key, since a calendar app cannot send one; the token from `POST /teachers/{id}/feed` or
        `/students/{lead_id}/feed` is the credential. Returns `text/calendar` (RFC 5545) with the owner's lessons
        from a month ago to half a year ahead, one VEVENT each with a stable UID, RECURRENCE-ID for series lessons
        and STATUS:CANCELLED for cancelled ones; cacheable for 5 minutes. An unknown or revoked token, or a tenant
        with scheduling off, is a 404.
        """
        session = public_session()
        if len(token) > 100:
            raise NotFound("no such feed")
        row = session.scalars(select(FeedToken).where(FeedToken.token_hash == _hash(token))).first()
        if row is None or row.revoked_at is not None:
            raise NotFound("no such feed")
        c = enter_tenant(row.tenant_id, plugin="scheduling")
        body = calendar(c, row.kind, row.owner_id)
        return file_response(body, "text/calendar", f"{row.kind}-{row.owner_id}.ics", max_age=300)
