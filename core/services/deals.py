"""Deals and refunds. Amounts are ``Decimal`` rounded half-up to the cent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from ..context import HookContext
from ..errors import InvalidInput, NotFound
from ..models import Deal, Lead, Refund
from ..money import currency_code, to_money
from ..pagination import Page, paginate
from .leads import change_stage
from .routing import handoff_if_due


def _amount(value: Any, field: str = "amount") -> Decimal:
    try:
        amount = to_money(value)
    except ValueError as exc:
        raise InvalidInput("invalid amount", {field: [str(exc)]}) from None
    if amount <= 0:
        raise InvalidInput("invalid amount", {field: ["must be greater than 0"]})
    return amount


def deal_snapshot(deal: Deal) -> dict[str, Any]:
    return {
        "deal_id": deal.id, "lead_id": deal.lead_id, "amount": deal.amount, "currency": deal.currency,
        "product": deal.product, "kind": deal.kind, "owner_id": deal.owner_id, "team_id": deal.team_id,
        "won_at": deal.won_at,
    }


def record_deal(
    ctx: HookContext, lead: Lead, *, amount: Any, currency: str | None = None, product: str = "",
    kind: str | None = None,
) -> Deal:
    """A won deal: the lead becomes (or stays) a customer and its stage is ``won``.

    ``kind`` defaults to ``first_purchase`` for a lead that is not yet a
    customer and ``repurchase`` for one that is.
    """
    value = _amount(amount)
    try:
        code = currency_code(currency or ctx.tenant.currency)
    except ValueError as exc:
        raise InvalidInput("unknown currency", {"currency": [str(exc)]}) from None
    kind = kind or ("repurchase" if lead.is_customer else "first_purchase")
    now = ctx.now()
    deal = Deal(
        lead_id=lead.id, owner_id=lead.owner_id, team_id=lead.team_id, amount=value,
        refunded=Decimal("0.00"), currency=code, product=product,
        kind=kind, won_at=now, created_by=ctx.actor.user_id if ctx.actor else None,
    )
    ctx.session.add(deal)
    change_stage(ctx, lead, "won", by_deal=True)
    lead.is_customer = True
    ctx.session.flush()
    ctx.emit("deal_won", [deal_snapshot(deal)])
    handoff_if_due(ctx, lead, kind)
    return deal


def refund(ctx: HookContext, deal_id: int, *, amount: Any, reason: str) -> Refund:
    """Refund part or all of a deal, as a new entry.

    One conditional UPDATE adds to ``refunded`` only while the total stays
    within the deal's amount, so concurrent refunds cannot over-refund.
    """
    if not (reason or "").strip():
        raise InvalidInput("a refund needs a reason", {"reason": ["required"]})
    value = _amount(amount)
    deal = get_deal(ctx, deal_id)
    done = ctx.session.execute(  # type: ignore[attr-defined]  # a CursorResult
        update(Deal)
        .where(Deal.id == deal.id, Deal.refunded + value <= Deal.amount)
        .values(refunded=Deal.refunded + value)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        ctx.session.refresh(deal)
        left = deal.amount - deal.refunded
        raise InvalidInput(
            "refund larger than what is left", {"amount": [f"at most {left} is left to refund"]}
        )
    ctx.session.refresh(deal)
    row = Refund(
        deal_id=deal.id, amount=value, reason=reason.strip(),
        created_by=ctx.actor.user_id if ctx.actor else None, created_at=ctx.now(),
    )
    ctx.session.add(row)
    ctx.session.flush()
    ctx.emit("deal_refunded", [{
        "refund_id": row.id, "deal_id": deal.id, "lead_id": deal.lead_id, "amount": value,
        "reason": row.reason, "refunded_total": deal.refunded,
    }])
    return row


def get_deal(ctx: HookContext, deal_id: int) -> Deal:
    stmt = select(Deal).where(Deal.id == deal_id)
    if ctx.actor is not None and ctx.actor.role == "rep":
        stmt = stmt.where(Deal.owner_id == ctx.actor.user_id)
    deal = ctx.session.scalars(stmt).first()
    if deal is None:
        raise NotFound(f"deal {deal_id} not found")
    return deal


def list_deals(ctx: HookContext, filters: dict[str, Any], cursor: str | None, limit: int) -> Page[Deal]:
    stmt = select(Deal)
    if ctx.actor is not None and ctx.actor.role == "rep":
        stmt = stmt.where(Deal.owner_id == ctx.actor.user_id)
    for name in ("lead_id", "owner_id", "kind"):
        if filters.get(name) is not None:
            stmt = stmt.where(getattr(Deal, name) == filters[name])
    return paginate(ctx.session, stmt, Deal.id, cursor, limit)
