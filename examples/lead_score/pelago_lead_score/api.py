"""The plugin's routes. The host mounts this blueprint at ``/api/v1/lead_score``
and answers 404 (naming the plugin) for tenants that have it off, so the views
never check that themselves.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select

from pelago.plugin import Blueprint, HookContext, Lead, NotFound, visible_leads
from pelago.plugin import current_context as ctx

from . import schemas as s
from .jobs import PLUGIN
from .models import LeadScore

blp = Blueprint("lead_score", __name__, description="Lead scores (example third-party plugin)")


def _visible(c: HookContext) -> Select[tuple[LeadScore]]:
    """Scores of the leads the caller may see: the tenant's, or a rep's own.

    The session already limits every ORM query to the caller's tenant; the
    core's visibility rule (:func:`~pelago.plugin.visible_leads`: a rep sees
    her own leads only) is applied by joining the leads the caller may see.
    """
    return visible_leads(c).with_only_columns(LeadScore).join_from(Lead, LeadScore, LeadScore.lead_id == Lead.id)


def _out(c: HookContext, row: LeadScore) -> dict[str, Any]:
    return {
        "lead_id": row.lead_id,
        "score": row.score,
        "hot": row.score >= c.settings(PLUGIN)["hot_threshold"],
        "activities": row.activities,
        "updated_at": row.updated_at,
    }


@blp.route("/leads/<int:lead_id>", methods=["GET"])
@blp.response(200, s.Score)
def lead_score(lead_id: int) -> Any:
    """Read the score of one lead.

    Visible like the lead: a rep sees the scores of her own leads only;
    another tenant's lead is a 404.
    """
    c = ctx()
    row = c.session.scalars(_visible(c).where(LeadScore.lead_id == lead_id)).first()
    if row is None:
        # Also the answer for another tenant's lead: 404, never 403.
        raise NotFound(f"no score for lead {lead_id}: unknown lead, or not scored yet")
    return _out(c, row)


@blp.route("/top", methods=["GET"])
@blp.arguments(s.TopArgs, location="query")
@blp.response(200, s.TopList)
def top(args: dict[str, Any]) -> Any:
    """List the best-scored leads, best first (ties: newest lead first).

    Of the leads the caller may see; paginated with `limit` and `cursor`.
    """
    c = ctx()
    stmt = _visible(c)
    if args.get("min_score") is not None:
        stmt = stmt.where(LeadScore.score >= args["min_score"])
    rows = c.session.scalars(
        stmt.order_by(LeadScore.score.desc(), LeadScore.lead_id.desc()).limit(args["limit"])
    ).all()
    return {"items": [_out(c, r) for r in rows]}
