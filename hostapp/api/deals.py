"""``/api/v1/deals`` and ``/api/v1/leads/{id}/deals``: won deals and refunds."""

from __future__ import annotations

from typing import Any

from pelago.core.services import deals as svc
from pelago.core.services.leads import get_lead

from ..auth import commit, ctx
from . import Blueprint
from . import schemas as s

blp = Blueprint("deals", __name__, url_prefix="/api/v1", description="Won deals and refunds")


@blp.route("/leads/<int:lead_id>/deals", methods=["POST"])
@blp.arguments(s.DealArgs)
@blp.response(201, s.Deal)
def create(data: dict[str, Any], lead_id: int) -> Any:
    """Record a won deal on a lead: the lead becomes a customer in stage `won`.

    `amount` is a decimal string; `currency` an ISO 4217 code (default: the
    tenant's). `kind` defaults to `first_purchase`, or `repurchase` for a
    lead that is already a customer. A first purchase may hand the customer
    to the repurchase team (routing settings).
    """
    c = ctx()
    deal = svc.record_deal(c, get_lead(c, lead_id, for_update=True), **data)
    commit()
    return deal


@blp.route("/deals", methods=["GET"])
@blp.arguments(s.DealFilter, location="query")
@blp.response(200, s.DealPage)
def index(args: dict[str, Any]) -> Any:
    """List deals, newest first.

    Filters: `lead_id`, `owner_id`, `kind`. Reps see the deals they own (a
    deal keeps the lead's owner at the time of the win).
    """
    page = svc.list_deals(ctx(), args, args.pop("cursor", None), args.pop("limit"))
    return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("/deals/<int:deal_id>", methods=["GET"])
@blp.response(200, s.Deal)
def show(deal_id: int) -> Any:
    """Read one deal, with `refunded`, the running total of its refunds.

    Another tenant's deal, or for a rep a deal she does not own, is a 404.
    """
    return svc.get_deal(ctx(), deal_id)


@blp.route("/deals/<int:deal_id>/refunds", methods=["POST"])
@blp.arguments(s.RefundArgs)
@blp.response(201, s.Refund)
def refund(data: dict[str, Any], deal_id: int) -> Any:
    """Refund part or all of a deal, as a new entry.

    The total refunded can never exceed the deal's amount: more than what is
    left is a 422 naming what is left. A `reason` is required.
    """
    c = ctx()
    row = svc.refund(c, deal_id, amount=data["amount"], reason=data["reason"])
    commit()
    return row
