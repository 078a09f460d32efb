"""Leads: intake with duplicate merge, edits, ownership, stages, activities, history."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Select, inspect, select, update
from sqlalchemy.orm import make_transient_to_detached

from ..attributes import MAX_KEYS, attribute_errors
from ..context import HookContext
from ..db import flush_or_conflict
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from ..models import STAGE_TRANSITIONS, STAGES, Activity, Lead, OwnershipChange, StageChange, Team, Touch, User
from ..models.leads import DEAL_TRANSITIONS
from ..ownership import Move, change_owners, refuse_if_any
from ..pagination import Page, paginate
from ..phones import BadPhone, normalise
from ..routing import LeadInfo
from ..timeline import plugin_timeline
from ..vetoes import refuse_if_vetoed
from .intake import Submission, ingest, lock_emails

CONTACT_FIELDS = ("name", "email", "source", "region", "product")


@dataclass
class Intake:
    """The outcome of one submission."""

    lead: Lead
    created: bool
    merged: bool
    replayed: bool
    touch_id: int


def lead_snapshot(lead: Lead) -> dict[str, Any]:
    return {
        "lead_id": lead.id,
        "name": lead.name,
        "phone": lead.phone,
        "email": lead.email,
        "source": lead.source,
        "stage": lead.stage,
        "owner_id": lead.owner_id,
        "team_id": lead.team_id,
        "is_customer": lead.is_customer,
        "created_at": lead.created_at,
    }


def clean_contact(ctx: HookContext, data: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise phone (E.164) and email; raise 422 naming the field."""
    out = dict(data)
    if "phone" in out:
        raw = out["phone"]
        if raw in (None, ""):
            out["phone"] = None
        else:
            try:
                out["phone"] = normalise(str(raw), ctx.tenant.default_region)
            except BadPhone as exc:
                raise InvalidInput("invalid phone", {"phone": [str(exc)]}) from None
    if "email" in out:
        email = (out["email"] or "").strip().lower()
        out["email"] = email or None
    return out


# --- intake -----------------------------------------------------------------


def create_lead(
    ctx: HookContext,
    data: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
    touch: Mapping[str, Any] | None = None,
    raw: Mapping[str, Any] | None = None,
) -> Intake:
    """Create a lead, or fold the submission into the lead it duplicates.

    One submission through :func:`pelago.core.services.intake.ingest`, the same
    line webhooks and imports use: duplicates are decided by the unique indexes
    on (tenant, phone) and (tenant, email when no phone), nothing on an
    existing lead is overwritten (only empty fields are filled), and a
    caller-given owner that a plugin vetoes is a 409.
    """
    if data.get("team_id") is not None and ctx.session.get(Team, data["team_id"]) is None:
        raise InvalidInput("unknown team", {"team_id": [f"no team {data['team_id']} in this tenant"]})
    if data.get("owner_id") is not None:
        _user(ctx, data["owner_id"], field="owner_id")
    sub = Submission(data, touch or {}, raw, idempotency_key)
    outcome = ingest(ctx, [sub], strict_owner=True)[0]
    if outcome.status == "invalid":
        errors = outcome.errors or {}
        message = "a lead needs a phone or an email" if errors.get("phone") == ["phone or email is required"] \
            else "invalid " + ", ".join(sorted(errors))
        raise InvalidInput(message, errors)
    lead = _as_inserted(ctx, outcome.row) if outcome.row is not None else None
    if lead is None:
        lead = ctx.session.get(Lead, outcome.lead_id, populate_existing=True)
    assert lead is not None
    return Intake(
        lead, created=outcome.status == "created", merged=outcome.status == "merged"
        or (outcome.status == "replayed" and _touch_merged(ctx, outcome.touch_id)),
        replayed=outcome.status == "replayed", touch_id=outcome.touch_id or 0,
    )


def _as_inserted(ctx: HookContext, row: Mapping[str, Any]) -> Lead | None:
    """The lead the line has just inserted, from the insert's own RETURNING: no read back.

    ``None`` when the session already holds that lead (then it is read).
    """
    lead = Lead(**row)
    make_transient_to_detached(lead)  # persistent as if loaded: no history, nothing to flush
    key = inspect(lead).key
    if key is None or ctx.session.identity_map.get(key) is not None:
        return None
    ctx.session.add(lead)
    return lead


def _touch_merged(ctx: HookContext, touch_id: int | None) -> bool:
    return bool(ctx.session.scalar(select(Touch.merged).where(Touch.id == touch_id)))


def _jsonable(raw: Mapping[str, Any]) -> dict[str, Any]:
    from ..events import snapshot

    return snapshot(dict(raw))


# --- reads --------------------------------------------------------------------


def visible(ctx: HookContext) -> Select[Lead]:
    """Leads the actor may see: all of the tenant's, or a rep's own."""
    stmt = select(Lead)
    if ctx.actor is not None and ctx.actor.role == "rep":
        stmt = stmt.where(Lead.owner_id == ctx.actor.user_id)
    return stmt


def get_lead(ctx: HookContext, lead_id: int, *, for_update: bool = False) -> Lead:
    stmt = visible(ctx).where(Lead.id == lead_id)
    if for_update:
        stmt = stmt.with_for_update()
    lead = ctx.session.scalars(stmt).first()
    if lead is None:
        raise NotFound(f"lead {lead_id} not found")
    return lead


def list_leads(ctx: HookContext, filters: Mapping[str, Any], cursor: str | None, limit: int) -> Page[Lead]:
    stmt = visible(ctx)
    for name in ("stage", "owner_id", "team_id", "source"):
        if filters.get(name) is not None:
            stmt = stmt.where(getattr(Lead, name) == filters[name])
    if filters.get("unowned"):
        stmt = stmt.where(Lead.owner_id.is_(None))
    if filters.get("created_after") is not None:
        stmt = stmt.where(Lead.created_at >= filters["created_after"])
    if filters.get("created_before") is not None:
        stmt = stmt.where(Lead.created_at < filters["created_before"])
    q = (filters.get("q") or "").strip()
    if q:
        stmt = stmt.where(_search(ctx, q))
    return paginate(ctx.session, stmt, Lead.id, cursor, limit)


def _search(ctx: HookContext, q: str) -> Any:
    """Exact phone (any formatting), email, or a name prefix."""
    from sqlalchemy import or_

    clauses = [Lead.email == q.lower(), Lead.name.like(_escape(q) + "%", escape="\\")]
    try:
        clauses.append(Lead.phone == normalise(q, ctx.tenant.default_region))
    except BadPhone:
        pass
    return or_(*clauses)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- edits --------------------------------------------------------------------


def update_lead(ctx: HookContext, lead: Lead, data: Mapping[str, Any]) -> Lead:
    """Edit contact fields, attributes and the lock; a phone taken by another lead is 409."""
    data = clean_contact(ctx, data)
    if "locked" in data and (ctx.actor is None or not ctx.actor.at_least("manager")):
        raise Forbidden("only a manager can lock or unlock a lead")
    if data.get("phone") is None and "phone" in data and not (data.get("email") or lead.email):
        raise InvalidInput("a lead needs a phone or an email", {"phone": ["cannot remove the only contact"]})
    email = data.get("email", lead.email)
    if email and (("email" in data and data["email"] != lead.email) or ("phone" in data and data["phone"] is None)):
        # The email intake matches on changes (or the lead becomes email-only): take
        # intake's lock on it first, so a concurrent email-only submission either
        # sees this lead with its email or is seen by it, never neither.
        lock_emails(ctx, [email])
    for field in (*CONTACT_FIELDS, "phone", "locked"):
        if field in data:
            setattr(lead, field, data[field])
    if "attributes" in data:
        attributes = {**lead.attributes, **data["attributes"]}
        problems = attribute_errors(data["attributes"])
        if len(attributes) > max(MAX_KEYS, len(lead.attributes)):
            problems.insert(0, f"at most {MAX_KEYS} keys: the lead has {len(lead.attributes)}, "
                               f"this would make {len(attributes)}")
        if problems:
            raise InvalidInput("invalid attributes", {"attributes": problems})
        lead.attributes = attributes
    lead.updated_at = ctx.now()
    _flush(ctx, "phone or email already belongs to another lead")
    return lead


def assign(
    ctx: HookContext, lead: Lead, user_id: int | None, *, reason: str = "manual", note: str = "",
    rule: str | None = None, detail: Mapping[str, Any] | None = None,
) -> Lead:
    """Give ``lead`` to ``user_id`` (``None`` releases it), through :mod:`pelago.core.ownership`.

    Manual changes need a manager; rules never move a locked lead.
    """
    if reason == "manual" and (ctx.actor is None or not ctx.actor.at_least("manager")):
        raise Forbidden("only a manager can reassign leads")
    if lead.locked and reason != "manual":
        raise Conflict(f"lead {lead.id} is locked; only a manual reassignment can move it")
    if user_id == lead.owner_id:
        return lead
    if user_id is not None:
        _user(ctx, user_id, field="user_id")
    moved = change_owners(ctx, [Move(lead.id, lead.owner_id, user_id, rule=rule, detail=dict(detail or {}))],
                          reason=reason, note=note)
    refuse_if_any(moved.refused)
    if moved.missed:
        raise Conflict("the lead changed meanwhile; reload and retry")
    return lead


def record_decision(ctx: HookContext, lead: Lead, decision: Any, *, reason: str) -> None:
    """Apply a routing :class:`~pelago.core.routing.Decision` made for an existing lead.

    With an owner, the lead moves (team included) and ``lead_assigned`` is
    emitted; without one nothing moves, but the ledger still records the
    decision and why, so "why is she still the owner?" has an answer too.
    Routing has asked the vetoes already.
    """
    if decision.owner_id is not None and decision.owner_id != lead.owner_id:
        moved = change_owners(ctx, [Move(lead.id, lead.owner_id, decision.owner_id, rule=decision.rule,
                                         detail=decision.explanation, team_id=decision.team_id)],
                              reason=reason, check=False)
        if moved.missed:
            raise Conflict("the lead changed meanwhile; reload and retry")
    else:
        ctx.session.add(OwnershipChange(
            lead_id=lead.id, from_user_id=lead.owner_id, to_user_id=lead.owner_id, from_team_id=lead.team_id,
            to_team_id=lead.team_id, reason=reason, rule=None, note="nothing moved",
            detail=_jsonable(decision.explanation), actor_id=_actor_id(ctx), at=ctx.now(),
        ))
        _flush(ctx, "the lead changed meanwhile; reload and retry")


def change_stage(
    ctx: HookContext, lead: Lead, new: str, lost_reason: str | None = None, *, by_deal: bool = False
) -> Lead:
    """Move ``lead`` to stage ``new`` along the stage machine (:data:`~pelago.core.models.STAGE_TRANSITIONS`).

    A move the machine does not allow is a 409 naming the allowed ones;
    ``by_deal`` (a recorded deal) may move any stage but ``won`` to ``won``.
    The database holds the same machine (a trigger on ``core_lead``,
    migration ``0007``).
    """
    if new not in STAGES:
        raise InvalidInput("unknown stage", {"stage": [f"must be one of {', '.join(STAGES)}"]})
    if new == "lost" and not (lost_reason or "").strip():
        raise InvalidInput("a lost lead needs a reason", {"lost_reason": ["required when stage is lost"]})
    old = lead.stage
    if old == new and (new != "lost" or lost_reason == lead.lost_reason):
        return lead
    if old != new and new not in STAGE_TRANSITIONS[old] and not (by_deal and (old, new) in DEAL_TRANSITIONS):
        allowed = list(STAGE_TRANSITIONS[old])
        hint = {
            "won": "a won lead stays won; a next purchase is a new deal",
            "lost": "reopen it first: lost → new",
        }.get(old, f"from {old!r} a lead may go to {', '.join(allowed)}")
        raise Conflict(f"a lead in stage {old!r} cannot move to {new!r}: {hint}",
                       {"from": old, "to": new, "allowed": allowed})
    refuse_if_vetoed(ctx, "check_stage_change", lead=LeadInfo.of(lead), old=old, new=new)
    now = ctx.now()
    lead.stage = new
    lead.lost_reason = lost_reason.strip() if new == "lost" and lost_reason else None
    lead.stage_changed_at = now
    lead.updated_at = now
    if new == "won":
        lead.is_customer = True
    ctx.session.add(StageChange(
        lead_id=lead.id, old=old, new=new, lost_reason=lead.lost_reason, actor_id=_actor_id(ctx), at=now
    ))
    ctx.emit("lead_stage_changed", [{
        "lead_id": lead.id, "old": old, "new": new, "lost_reason": lead.lost_reason,
    }])
    _flush(ctx, "the lead changed meanwhile; reload and retry")
    return lead


def log_activity(
    ctx: HookContext, lead: Lead, kind: str, note: str = "", occurred_at: datetime | None = None
) -> Activity:
    now = ctx.now()
    at = (occurred_at or now).astimezone(timezone.utc)
    if at > now:
        raise InvalidInput("an activity cannot be in the future", {"occurred_at": ["is in the future"]})
    activity = Activity(
        lead_id=lead.id, user_id=_actor_id(ctx), kind=kind, note=note, occurred_at=at, created_at=now
    )
    ctx.session.add(activity)
    # Conditional: a late-logged old activity never moves last_activity_at back.
    ctx.session.execute(
        update(Lead)
        .where(Lead.id == lead.id)
        .where((Lead.last_activity_at.is_(None)) | (Lead.last_activity_at < at))
        .values(last_activity_at=at)
        .execution_options(synchronize_session="fetch")
    )
    ctx.session.flush()
    ctx.emit("activity_logged", [{
        "activity_id": activity.id, "lead_id": lead.id, "kind": kind,
        "user_id": activity.user_id, "occurred_at": at,
    }])
    return activity


def list_activities(ctx: HookContext, lead: Lead, cursor: str | None, limit: int) -> Page[Activity]:
    return paginate(ctx.session, select(Activity).where(Activity.lead_id == lead.id), Activity.id, cursor, limit)


def list_touches(ctx: HookContext, lead: Lead, cursor: str | None, limit: int) -> Page[Touch]:
    """The lead's touches (each submission that made or reached it), newest first."""
    return paginate(ctx.session, select(Touch).where(Touch.lead_id == lead.id), Touch.id, cursor, limit)


def history(ctx: HookContext, lead: Lead, *, plugins: bool = False) -> list[dict[str, Any]]:
    """Ownership, stage and activity timeline, oldest first; with ``plugins``, what plugins add too.

    The plugins' entries (the ``lead_timeline`` query, asked only of the
    plugins on for the tenant) are items of type ``plugin`` with the plugin's
    name, ``kind``, ``title`` (English, ``{name}`` placeholders), ``values``
    and ``text`` (the entry's ``detail``). On a tie the core's come first.
    """
    items = _core_history(ctx, lead)
    if plugins:
        for found in plugin_timeline(ctx, lead.id):
            e = found.entry
            items.append({"type": "plugin", "at": e.at, "plugin": found.plugin, "kind": e.kind,
                          "title": e.title, "values": dict(e.values), "text": e.detail})
        items.sort(key=lambda i: (i["at"], i["type"] == "plugin"))  # stable: the core's order kept
    return items


def _core_history(ctx: HookContext, lead: Lead) -> list[dict[str, Any]]:
    s = ctx.session
    items: list[dict[str, Any]] = []
    for o in s.scalars(select(OwnershipChange).where(OwnershipChange.lead_id == lead.id)):
        items.append({
            "type": "ownership", "at": o.at, "id": o.id, "actor_id": o.actor_id,
            "from_user_id": o.from_user_id, "to_user_id": o.to_user_id, "team_id": o.to_team_id,
            "reason": o.reason, "rule": o.rule, "note": o.note, "detail": o.detail,
        })
    for c in s.scalars(select(StageChange).where(StageChange.lead_id == lead.id)):
        items.append({
            "type": "stage", "at": c.at, "id": c.id, "actor_id": c.actor_id,
            "old": c.old, "new": c.new, "lost_reason": c.lost_reason,
        })
    for a in s.scalars(select(Activity).where(Activity.lead_id == lead.id)):
        items.append({
            "type": "activity", "at": a.occurred_at, "id": a.id, "actor_id": a.user_id,
            "kind": a.kind, "note": a.note,
        })
    order = {"stage": 0, "ownership": 1, "activity": 2}
    items.sort(key=lambda i: (i["at"], order[i["type"]], i["id"]))
    return items


# --- helpers ------------------------------------------------------------------


def _actor_id(ctx: HookContext) -> int | None:
    return ctx.actor.user_id if ctx.actor else None


def _user(ctx: HookContext, user_id: int, *, field: str) -> User:
    user = ctx.session.get(User, user_id)
    if user is None or user.tenant_id != ctx.tenant.id:
        raise InvalidInput("unknown user", {field: [f"no user {user_id} in this tenant"]})
    if not user.active:
        raise InvalidInput("inactive user", {field: [f"user {user_id} is not active"]})
    return user


def _flush(ctx: HookContext, conflict_message: str) -> None:
    flush_or_conflict(ctx.session, conflict_message)
