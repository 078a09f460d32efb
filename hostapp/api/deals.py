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
    c = ctx()
    deal = svc.record_deal(c, get_lead(c, lead_id, for_update=True), **data)
    commit()
    return deal


@blp.route("/deals", methods=["GET"])
@blp.arguments(s.DealFilter, location="query")
@blp.response(200, s.DealPage)
def index(args: dict[str, Any]) -> Any:
    page = svc.list_deals(ctx(), args, args.pop("cursor", None), args.pop("limit"))
    return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("/deals/<int:deal_id>", methods=["GET"])
@blp.response(200, s.Deal)
def show(deal_id: int) -> Any:
    return svc.get_deal(ctx(), deal_id)


@blp.route("/deals/<int:deal_id>/refunds", methods=["POST"])
@blp.arguments(s.RefundArgs)
@blp.response(201, s.Refund)
def refund(data: dict[str, Any], deal_id: int) -> Any:
    c = ctx()
    row = svc.refund(c, deal_id, amount=data["amount"], reason=data["reason"])
    commit()
    return row
