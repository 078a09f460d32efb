"""Templates, sequences and their steps: create, change, show; previews and per-sequence stats.

Editing a live sequence never resends: a step's outbox row is unique per
(enrolment, step), so a changed text or delay applies to the messages not yet
planned, and a step added later reaches the active enrolments that have not
passed its position.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select

from pelago.plugin import HookContext, InvalidInput, Lead, NotFound, User, flush_or_conflict

from . import text
from .models import Enrolment, Message, SmsSequence, Step, Template


def template_out(t: Template) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "body": t.body, "provider_template_id": t.provider_template_id,
            "variables": sorted(set(text.variables_of(t.body))), "created_at": t.created_at, "updated_at": t.updated_at}


def get_template(ctx: HookContext, template_id: int) -> Template:
    found = ctx.session.scalars(select(Template).where(Template.id == template_id)).first()
    if found is None:
        raise NotFound(f"template {template_id} not found")
    return found


def create_template(ctx: HookContext, data: dict[str, Any]) -> Template:
    now = ctx.now()
    t = Template(name=data["name"], body=data["body"], provider_template_id=data.get("provider_template_id"),
                 created_at=now, updated_at=now)
    ctx.session.add(t)
    flush_or_conflict(ctx.session, f"a template named {data['name']!r} exists", {"name": ["already used"]})
    return t


def update_template(ctx: HookContext, t: Template, data: dict[str, Any]) -> Template:
    for key in ("name", "body", "provider_template_id"):
        if key in data:
            setattr(t, key, data[key])
    t.updated_at = ctx.now()
    flush_or_conflict(ctx.session, "a template with that name exists", {"name": ["already used"]})
    return t


def preview(ctx: HookContext, body: str, lead_id: int | None) -> dict[str, Any]:
    """``body`` rendered for ``lead_id`` (or with the variables' names shown), with its segment count."""
    unknown = text.unknown_variables(body)
    if lead_id is None:
        values = {v: f"{{{v}}}" for v in text.variables_of(body)}
    else:
        lead = ctx.session.scalars(select(Lead).where(Lead.id == lead_id)).first()
        if lead is None:
            raise NotFound(f"lead {lead_id} not found")
        owner = ctx.session.scalar(select(User.name).where(User.id == lead.owner_id)) if lead.owner_id else None
        values = text.lead_values({c: getattr(lead, c) for c in ("name", "phone", "source", "region", "product",
                                                                 "stage", "attributes")}, owner)
    rendered = text.render(body, values, str(ctx.settings("sms_nurture").get("signature", "")))
    n = text.count(rendered)
    return {"text": rendered, "encoding": n.encoding, "characters": n.characters, "units": n.units,
            "segments": n.segments, "per_segment": n.per_segment, "unknown_variables": unknown}


def get_sequence(ctx: HookContext, sequence_id: int) -> SmsSequence:
    found = ctx.session.scalars(select(SmsSequence).where(SmsSequence.id == sequence_id)).first()
    if found is None:
        raise NotFound(f"sequence {sequence_id} not found")
    return found


def sequence_out(ctx: HookContext, seq: SmsSequence, steps: list[Step] | None = None) -> dict[str, Any]:
    if steps is None:
        steps = list(ctx.session.scalars(select(Step).where(Step.sequence_id == seq.id).order_by(Step.position)))
    return {"id": seq.id, "name": seq.name, "status": seq.status, "trigger": seq.trigger,
            "trigger_hours": seq.trigger_hours, "trigger_reasons": list(seq.trigger_reasons or []),
            "steps": [step_out(s) for s in steps], "created_at": seq.created_at, "updated_at": seq.updated_at}


def step_out(s: Step) -> dict[str, Any]:
    return {"id": s.id, "position": s.position, "template_id": s.template_id, "delay_minutes": s.delay_minutes,
            "delay_from": s.delay_from, "window_start": s.window_start, "window_end": s.window_end}


def create_sequence(ctx: HookContext, data: dict[str, Any]) -> SmsSequence:
    now = ctx.now()
    seq = SmsSequence(name=data["name"], status="active", trigger=data.get("trigger", "manual"),
                      trigger_hours=data.get("trigger_hours"), trigger_reasons=data.get("trigger_reasons") or [],
                      created_at=now, updated_at=now)
    ctx.session.add(seq)
    flush_or_conflict(ctx.session, f"a sequence named {data['name']!r} exists", {"name": ["already used"]})
    for i, step in enumerate(data.get("steps") or []):
        add_step(ctx, seq, step, field=f"steps.{i}.template_id")
    return seq


def update_sequence(ctx: HookContext, seq: SmsSequence, data: dict[str, Any]) -> SmsSequence:
    for key in ("name", "status", "trigger", "trigger_hours", "trigger_reasons"):
        if key in data:
            setattr(seq, key, data[key])
    if seq.trigger == "not_contacted" and not seq.trigger_hours:

        raise InvalidInput("not_contacted needs trigger_hours", {"trigger_hours": ["required for not_contacted"]})
    seq.updated_at = ctx.now()
    flush_or_conflict(ctx.session, "a sequence with that name exists", {"name": ["already used"]})
    return seq


def add_step(ctx: HookContext, seq: SmsSequence, data: dict[str, Any], field: str = "template_id") -> Step:
    if ctx.session.scalar(select(Template.id).where(Template.id == data["template_id"])) is None:
        raise InvalidInput("unknown template", {field: [f"no template {data['template_id']}"]})
    position = (ctx.session.scalar(select(func.max(Step.position)).where(Step.sequence_id == seq.id)) or 0) + 1
    now = ctx.now()
    step = Step(sequence_id=seq.id, position=position, template_id=data["template_id"],
                delay_minutes=data["delay_minutes"], delay_from=data.get("delay_from", "previous"),
                window_start=data.get("window_start"), window_end=data.get("window_end"),
                created_at=now, updated_at=now)
    ctx.session.add(step)
    flush_or_conflict(ctx.session, "the sequence changed meanwhile: add the step again")
    seq.updated_at = now
    return step


def update_step(ctx: HookContext, step: Step, data: dict[str, Any]) -> Step:
    if "template_id" in data and ctx.session.scalar(
            select(Template.id).where(Template.id == data["template_id"])) is None:
        raise InvalidInput("unknown template", {"template_id": [f"no template {data['template_id']}"]})
    merged = {"window_start": step.window_start, "window_end": step.window_end, **data}
    if (merged["window_start"] is None) != (merged["window_end"] is None):
        raise InvalidInput("give both ends of the window, or neither", {"window_end": ["both or neither"]})
    if merged["window_start"] is not None and merged["window_start"] == merged["window_end"]:
        raise InvalidInput("a window's end must differ from its start", {"window_end": ["equals window_start"]})
    for key in ("template_id", "delay_minutes", "delay_from", "window_start", "window_end"):
        if key in data:
            setattr(step, key, data[key])
    step.updated_at = ctx.now()
    ctx.session.flush()
    return step


def stats(ctx: HookContext, seq: SmsSequence) -> dict[str, Any]:
    """Enrolled, active, messages by status, and how the enrolments ended (replied, opted out, converted)."""
    e = ctx.session.execute(select(
        func.count(),
        func.coalesce(func.sum(case((Enrolment.status == "active", 1), else_=0)), 0),
        func.coalesce(func.sum(case((Enrolment.reason == "replied", 1), else_=0)), 0),
        func.coalesce(func.sum(case((Enrolment.reason == "opted_out", 1), else_=0)), 0),
        func.coalesce(func.sum(case((Enrolment.reason == "converted", 1), else_=0)), 0),
    ).where(Enrolment.sequence_id == seq.id)).one()
    by_status = dict(ctx.session.execute(select(Message.status, func.count()).where(
        Message.sequence_id == seq.id).group_by(Message.status)).all())
    delivered = by_status.get("delivered", 0)
    return {"sequence_id": seq.id, "enrolled": e[0], "active": e[1], "replied": e[2], "opted_out": e[3],
            "converted": e[4], "sent": by_status.get("sent", 0) + delivered, "delivered": delivered,
            "failed": by_status.get("failed", 0), "skipped": by_status.get("skipped", 0),
            "dropped": by_status.get("dropped", 0)}
