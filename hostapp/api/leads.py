"""``/api/v1/leads``: intake, list, edit, ownership, stages, activities, history."""

from __future__ import annotations

from typing import Any

from flask import request

from pelago.core.errors import Conflict, Forbidden, InvalidInput
from pelago.core.services import leads as svc

from .. import strict_input
from ..auth import commit, ctx, requires
from . import Blueprint
from . import schemas as s

blp = Blueprint("leads", __name__, url_prefix="/api/v1/leads", description="Leads and their history")

TOUCH_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "click_id")


@blp.route("", methods=["POST"])
@blp.arguments(s.LeadCreate)
@blp.response(201, s.LeadIntake, description="created")
@blp.alt_response(200, schema=s.LeadIntake, description="merged into an existing lead, or a replayed retry")
@blp.doc(parameters=[{
    "in": "header", "name": "Idempotency-Key", "required": False, "schema": {"type": "string", "maxLength": 200},
    "description": "a retry with the same key returns the first result and writes nothing",
}])
def create(data: dict[str, Any]) -> Any:
    """Create a lead, or merge the submission into the lead it duplicates.

    A phone (any format, normalised to E.164) or an email is required. A
    duplicate (same phone, or same email without a phone) is merged: `200`
    with `merged: true`, only empty fields filled, the submission kept as a
    touch. A retry with the same `Idempotency-Key` or `external_id` is
    replayed (`200`, `replayed: true`) and writes nothing. Without `owner_id`
    the routing hooks decide the owner; a rep's lead is always her own.
    """
    c = ctx()
    key = request.headers.get("Idempotency-Key") or data.pop("external_id", None)
    data.pop("external_id", None)
    if key is not None:
        try:
            strict_input.check_text(key)
        except strict_input.BadInput as exc:
            raise InvalidInput("invalid idempotency key", {"Idempotency-Key": [str(exc)]}, "headers") from None
        if len(key) > 200:
            raise InvalidInput(
                "idempotency key too long", {"Idempotency-Key": ["at most 200 characters"]}, "headers"
            )
    touch = {k: data.pop(k) for k in TOUCH_KEYS if k in data}
    touch["channel"] = "api"
    if c.actor is not None and c.actor.role == "rep":
        if data.get("owner_id") not in (None, c.actor.user_id):
            raise Forbidden("a rep can only create leads for herself")
        data["owner_id"] = c.actor.user_id  # a rep's own lead is hers
    result = svc.create_lead(c, data, idempotency_key=key, touch=touch, raw=request.get_json(silent=True) or {})
    if c.actor is not None and c.actor.role == "rep" and result.lead.owner_id != c.actor.user_id:
        # A rep's duplicate of a colleague's (or an unowned) lead: report the
        # collision, show nothing of the lead, keep nothing of the submission.
        c.session.rollback()
        raise Conflict(
            "this lead already exists and is not yours",
            {"lead_id": result.lead.id, "owner_id": result.lead.owner_id},
        )
    commit()
    out = _lead(result.lead) | {
        "merged": result.merged, "replayed": result.replayed, "touch_id": result.touch_id,
    }
    return out, 201 if result.created else 200


@blp.route("", methods=["GET"])
@blp.arguments(s.LeadFilter, location="query")
@blp.response(200, s.LeadPage)
def index(args: dict[str, Any]) -> Any:
    """List leads, newest first, with filters and a cursor.

    Filters: `stage`, `owner_id`, `team_id`, `unowned`, `source`,
    `created_after`/`created_before` and `q` (a phone in any format, an exact
    email or a name prefix). Reps see only the leads they own.
    """
    page = svc.list_leads(ctx(), args, args.pop("cursor", None), args.pop("limit"))
    return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("/<int:lead_id>", methods=["GET"])
@blp.response(200, s.Lead)
def show(lead_id: int) -> Any:
    """Read one lead.

    Another tenant's lead, or for a rep a lead she does not own, is a 404.
    """
    return svc.get_lead(ctx(), lead_id)


@blp.route("/<int:lead_id>", methods=["PATCH"])
@blp.arguments(s.LeadPatch)
@blp.response(200, s.Lead)
def patch(data: dict[str, Any], lead_id: int) -> Any:
    """Edit a lead's contact fields, attributes or lock.

    `attributes` are merged into the lead's (within the attribute limits).
    A phone or email that belongs to another lead is a 409; `locked` needs a
    manager. The lead's version is checked, so a concurrent edit is a 409.
    """
    c = ctx()
    lead = svc.update_lead(c, svc.get_lead(c, lead_id, for_update=True), data)
    commit()
    return lead


@blp.route("/<int:lead_id>/assign", methods=["POST"])
@blp.arguments(s.AssignArgs)
@blp.response(200, s.Lead)
@requires("manager")
def assign(data: dict[str, Any], lead_id: int) -> Any:
    """Reassign a lead, or release it with `user_id: null` (managers).

    Writes an ownership ledger row (reason `manual`) with the note and asks
    the plugins' `check_assign`; a veto is a 409 naming the plugin.
    """
    c = ctx()
    lead = svc.assign(c, svc.get_lead(c, lead_id, for_update=True), data["user_id"], note=data["note"])
    commit()
    return lead


@blp.route("/<int:lead_id>/stage", methods=["POST"])
@blp.arguments(s.StageArgs)
@blp.response(200, s.Lead)
def stage(data: dict[str, Any], lead_id: int) -> Any:
    """Move a lead to another stage along the stage machine.

    Allowed: forward through `new` → `contacted` → `qualified`, any open
    stage to `won` or `lost` (`lost` needs `lost_reason`), and `lost` back to
    `new`; a won lead stays won. Any other move is a 409 with the allowed
    ones. Plugins' `check_stage_change` may refuse it too (409).
    """
    c = ctx()
    lead = svc.change_stage(c, svc.get_lead(c, lead_id, for_update=True), data["stage"], data.get("lost_reason"))
    commit()
    return lead


@blp.route("/<int:lead_id>/activities", methods=["POST"])
@blp.arguments(s.ActivityArgs)
@blp.response(201, s.Activity)
def log_activity(data: dict[str, Any], lead_id: int) -> Any:
    """Log a follow-up (call, note, visit, WeChat, SMS, meeting, email) on a lead.

    `occurred_at` defaults to now and cannot be in the future; the lead's
    `last_activity_at` only ever moves forward.
    """
    c = ctx()
    activity = svc.log_activity(c, svc.get_lead(c, lead_id), data["kind"], data["note"], data.get("occurred_at"))
    commit()
    return activity


@blp.route("/<int:lead_id>/activities", methods=["GET"])
@blp.arguments(s.PageArgs, location="query")
@blp.response(200, s.ActivityPage)
def activities(args: dict[str, Any], lead_id: int) -> Any:
    """List a lead's activities, newest first.

    Paginated with `limit` and `cursor`; visible like the lead.
    """
    c = ctx()
    page = svc.list_activities(c, svc.get_lead(c, lead_id), args.get("cursor"), args["limit"])
    return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("/<int:lead_id>/touches", methods=["GET"])
@blp.arguments(s.PageArgs, location="query")
@blp.response(200, s.TouchPage)
def touches(args: dict[str, Any], lead_id: int) -> Any:
    """The lead's touches: every submission that made or reached it, newest first.

    Each touch is one arrival of the lead (the API, a channel webhook, an
    import row, a plugin) with its attribution: channel, source, UTM fields
    and click id, whether it was merged into the lead, and when it came.
    Visible like the lead: a rep sees the touches of her own leads only.
    """
    c = ctx()
    page = svc.list_touches(c, svc.get_lead(c, lead_id), args.get("cursor"), args["limit"])
    return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("/<int:lead_id>/history", methods=["GET"])
@blp.arguments(s.HistoryArgs, location="query")
@blp.response(200, s.History)
def history(args: dict[str, Any], lead_id: int) -> Any:
    """Read a lead's timeline: ownership, stage and activity entries, oldest first.

    Ownership entries carry the reason, the rule and the routing explanation
    (`detail`). With `include=plugins`, what the plugins on for the tenant
    did about the lead too (an SMS sent, a trial lesson, a conversion
    reported), merged by time: `type` `plugin`, with `plugin`, `kind`,
    `title`, `values` and `text`. Not paginated.
    """
    c = ctx()
    items = svc.history(c, svc.get_lead(c, lead_id), plugins="plugins" in args["include"])
    for item in items:
        if item["type"] == "plugin":  # the console translates the title; the API answers it in English
            item["title_values"] = values = item.pop("values")
            item["title"] = item["title"].format(**values) if values else item["title"]
    return {"items": items}


_LEAD_FIELDS = tuple(s.Lead().fields)  # a schema instance per request costs more than the dict


def _lead(lead: Any) -> dict[str, Any]:
    return {name: getattr(lead, name) for name in _LEAD_FIELDS}
