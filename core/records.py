"""Core-owned writes plugins ask for besides ownership: activities, stages, deals and refunds.

A plugin never writes ``core_*`` rows itself (docs/plugins.md, "Changing core
data"). What the API does for a person, these do for a plugin, through the
same services, so the same rules hold: a stage change asks the tenant's
``check_stage_change`` vetoes and follows the stage machine; a refund is a
conditional update that cannot over-refund; each writes its ledger row and
emits the core's event with the core's item shape.

Activities come in batches (an SMS dispatch logs hundreds at once): one
INSERT and one event for the batch. An activity with no ``user_id`` is
automatic (a message a plugin sent, a lesson attended) and does not move the
lead's ``last_activity_at``, which measures reps' follow-up (the pool's
"no follow-up" rule reads it): an automatic SMS is not a rep's work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import case, insert, select, update

from .context import HookContext
from .errors import InvalidInput, NotFound
from .models import ACTIVITY_KINDS, Activity, Lead, User
from .snapshots import LeadInfo


@dataclass(frozen=True)
class NewActivity:
    """An activity to log on ``lead_id``; ``user_id=None`` marks it automatic (a plugin's)."""

    lead_id: int
    kind: str
    note: str = ""
    occurred_at: datetime | None = None
    user_id: int | None = None


def log_activities(ctx: HookContext, activities: Sequence[NewActivity], *, skip: Iterable[str] = ()) -> list[int]:
    """Log ``activities`` (one INSERT, one ``activity_logged`` event); returns their ids, in order.

    Raises :class:`InvalidInput` for an unknown kind, a naive or future time,
    and :class:`NotFound` for a lead or user not in the tenant; nothing is
    written then. Reps' activities move ``last_activity_at`` forward only.
    ``skip`` names plugins that get no delivery of the event: the caller,
    logging what it did itself (a dispatch logging the messages it sent
    learns nothing from its own event, and would otherwise pay a delivery,
    one more transaction, per call). Every other subscriber gets it as usual.
    """
    if not activities:
        return []
    now = ctx.now()
    rows: list[dict[str, Any]] = []
    for i, a in enumerate(activities):
        if a.kind not in ACTIVITY_KINDS:
            choices = ", ".join(ACTIVITY_KINDS)
            raise InvalidInput("unknown activity kind", {str(i): {"kind": [f"must be one of {choices}"]}})
        at = a.occurred_at or now
        if at.tzinfo is None:
            raise InvalidInput("a time needs its timezone", {str(i): {"occurred_at": ["naive datetime"]}})
        at = at.astimezone(timezone.utc)
        if at > now:
            raise InvalidInput("an activity cannot be in the future", {str(i): {"occurred_at": ["is in the future"]}})
        rows.append({"tenant_id": ctx.tenant.id, "lead_id": a.lead_id, "user_id": a.user_id, "kind": a.kind,
                     "note": a.note, "occurred_at": at, "created_at": now})
    lead_ids = {r["lead_id"] for r in rows}
    found = set(ctx.session.scalars(select(Lead.id).where(Lead.id.in_(lead_ids))))
    if found != lead_ids:
        raise NotFound(f"lead {min(lead_ids - found)} not found")
    user_ids = {r["user_id"] for r in rows if r["user_id"] is not None}
    if user_ids:
        users = set(ctx.session.scalars(select(User.id).where(User.id.in_(user_ids))))
        if users != user_ids:
            raise NotFound(f"user {min(user_ids - users)} not found")
    ids = list(ctx.session.scalars(insert(Activity).returning(Activity.id, sort_by_parameter_order=True), rows))
    latest: dict[int, datetime] = {}
    for r in rows:
        lead_id, at = r["lead_id"], r["occurred_at"]
        if r["user_id"] is not None and (lead_id not in latest or at > latest[lead_id]):
            latest[lead_id] = at
    if latest:
        new_at = case(latest, value=Lead.id)
        # Conditional: a late-logged old activity never moves last_activity_at back.
        ctx.session.execute(
            update(Lead)
            .where(Lead.id.in_(latest), (Lead.last_activity_at.is_(None)) | (Lead.last_activity_at < new_at))
            .values(last_activity_at=new_at)
            .execution_options(synchronize_session=False)
        )
    from .events import emit

    emit(ctx, "activity_logged", [
        {"activity_id": aid, "lead_id": r["lead_id"], "kind": r["kind"], "user_id": r["user_id"],
         "occurred_at": r["occurred_at"]}
        for aid, r in zip(ids, rows, strict=True)
    ], skip=skip)
    return ids


def change_stage(ctx: HookContext, lead_id: int, new: str, *, lost_reason: str | None = None) -> LeadInfo:
    """Move a lead to stage ``new`` as the API would: vetoes asked, ledger row, ``lead_stage_changed``.

    Returns the lead as it is now. ``Vetoed`` (409) if a plugin refuses,
    ``InvalidInput`` for an unknown stage or a ``lost`` without a reason.
    """
    from .services.leads import change_stage as change

    lead = _lead(ctx, lead_id)
    return LeadInfo.of(change(ctx, lead, new, lost_reason))


def record_deal(
    ctx: HookContext, lead_id: int, *, amount: Decimal | str, currency: str | None = None, product: str = "",
    kind: str | None = None,
) -> int:
    """Record a won deal on a lead as the API would (stage ``won``, ``deal_won``); returns the deal id.

    ``kind``: ``first_purchase`` or ``repurchase`` (by default from whether
    the lead is already a customer). ``amount`` a ``Decimal`` or decimal string.
    """
    from .services.deals import record_deal as record

    lead = _lead(ctx, lead_id)
    return record(ctx, lead, amount=amount, currency=currency, product=product, kind=kind).id


def refund_deal(ctx: HookContext, deal_id: int, *, amount: Decimal | str, reason: str) -> int:
    """Refund part of a deal as the API would (``deal_refunded``); returns the refund id.

    One conditional update: the refunds of a deal never pass its amount,
    whoever refunds at the same time (``InvalidInput`` says what is left).
    """
    from .services.deals import refund

    return refund(ctx, deal_id, amount=amount, reason=reason).id


def _lead(ctx: HookContext, lead_id: int) -> Lead:
    lead = ctx.session.scalars(select(Lead).where(Lead.id == lead_id).with_for_update()).first()
    if lead is None:
        raise NotFound(f"lead {lead_id} not found")
    return lead
