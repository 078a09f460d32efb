"""``/api/v1/privacy``: a person's data exported or erased (PIPL), and the audit of both. Admins only."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from pelago.core.models import PRIVACY_ACTIONS
from pelago.core.services import privacy as svc

from ..auth import commit, ctx, requires
from . import Blueprint
from .schemas import LocalTime, PageArgs, page_of

blp = Blueprint(
    "privacy", __name__, url_prefix="/api/v1/privacy",
    description="Privacy requests: export or erase everything held about a person; the audit of both",
)


class PrivacyPerson(Schema):
    """The person: exactly one of ``phone`` (any formatting; E.164 with the tenant's region) or ``email``."""

    phone = fields.String(validate=validate.Length(min=1, max=50))
    email = fields.String(validate=validate.Length(min=1, max=254))


class PrivacyErasureArgs(PrivacyPerson):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=svc.MAX_REASON))


class PrivacyExport(Schema):
    subject = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    tenant = fields.String(required=True)
    exported_at = fields.String(required=True, metadata={"description": "ISO 8601, UTC"})
    audit_id = fields.Integer(required=True)
    leads = fields.List(fields.Dict(), required=True, metadata={
        "description": "per lead: lead, touches, activities, stage_changes, ownership, deals (with refunds)",
    })
    submissions = fields.List(fields.Dict(), required=True, metadata={
        "description": "the person's webhook submissions not routed (accepted or failed), payload and all",
    })
    plugins = fields.Dict(keys=fields.String(), required=True, metadata={
        "description": "each plugin's answer to the privacy_export hook, under its name",
    })


class PrivacyErasure(Schema):
    lead_ids = fields.List(fields.Integer(), required=True, metadata={
        "description": "the leads anonymised now (empty: nothing left to erase)",
    })
    audit_id = fields.Integer(required=True)
    event_id = fields.Integer(allow_none=True, required=True, metadata={
        "description": "the person_erased event telling the plugins, or null when no lead was found",
    })


class PrivacyAuditFilter(PageArgs, PrivacyPerson):
    action = fields.String(validate=validate.OneOf(PRIVACY_ACTIONS))


class PrivacyAuditEntry(Schema):
    id = fields.Integer(required=True)
    action = fields.String(required=True)
    actor_id = fields.Integer(allow_none=True, required=True)
    actor = fields.String(required=True)
    subject_kind = fields.String(required=True)
    subject_salt = fields.String(required=True)
    subject_hash = fields.String(required=True, metadata={
        "description": "SHA-256 of '<salt>:<kind>:<value>'; the person is never stored in clear",
    })
    lead_ids = fields.List(fields.Integer(), required=True)
    reason = fields.String(required=True)
    at = LocalTime(required=True)


PrivacyAuditPage = page_of(PrivacyAuditEntry)


@blp.route("/exports", methods=["POST"])
@blp.arguments(PrivacyPerson)
@blp.response(200, PrivacyExport)
@requires("admin")
def export(data: dict[str, Any]) -> Any:
    """Export everything held about a person

    The tenant's leads with this phone (normalised as intake does) or email,
    each with its touches, activities, stage changes, ownership ledger,
    deals and refunds; the person's webhook submissions not routed (yet),
    with their payload as received; and every enabled plugin's data about
    them. Nobody (or another tenant's person) gives empty ``leads`` and
    ``submissions``. Each export is written to the privacy audit.
    """
    c = ctx()
    document = svc.export(c, svc.subject(c, **data))
    commit()
    return document


@blp.route("/erasures", methods=["POST"])
@blp.arguments(PrivacyErasureArgs)
@blp.response(200, PrivacyErasure)
@requires("admin")
def erase(data: dict[str, Any]) -> Any:
    """Erase a person

    Anonymises the person's leads in place (ids, deals and ledgers stay,
    personal data goes), tells the plugins with the ``person_erased`` event
    and writes the privacy audit. Erasing again finds nothing and is fine.
    """
    c = ctx()
    reason = data.pop("reason")
    done = svc.erase(c, svc.subject(c, **data), reason=reason)
    commit()
    return done


@blp.route("/audit", methods=["GET"])
@blp.arguments(PrivacyAuditFilter, location="query")
@blp.response(200, PrivacyAuditPage)
@requires("admin")
def audit(args: dict[str, Any]) -> Any:
    """List the privacy audit

    Every export and erasure of the tenant, newest first, with who asked
    and which leads it concerned. ``phone`` or ``email`` keeps the rows about
    that person (the salted hash is recomputed); ``action`` filters by kind.
    """
    c = ctx()
    named = "phone" in args or "email" in args
    person = svc.subject(c, args.get("phone"), args.get("email"), location="query") if named else None
    page = svc.audit_log(c, args.get("cursor"), args["limit"], person=person, action=args.get("action"))
    return {"items": page.items, "next_cursor": page.next_cursor}
