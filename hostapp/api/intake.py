"""``POST /api/v1/intake/{key}``: the public webhook of a channel (ad platforms, own sites' forms).

No bearer token: the sender signs the raw body with the channel's secret
(``X-Pelago-Signature: sha256=<hex HMAC-SHA256>``). The checks run cheapest
and least revealing first, and each refusal stores nothing:

1. a body over :data:`MAX_BODY` bytes → 413;
2. no signature header, or not ``sha256=<64 hex digits>`` → 401;
3. an unknown or inactive channel key → 404;
4. a signature that does not match → 401;
5. a body that is not a UTF-8 JSON object Pelago can store → 400;
6. a payload whose mapped lead is invalid (bad phone, no contact) → 422.

Then one submission goes through the same intake line as the API and the
imports (dedupe, routing by the tenant's settings, touch, ledger, events).
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask_smorest import abort
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from pelago.core.errors import Conflict, InvalidInput
from pelago.core.models import Touch
from pelago.core.services import channels as svc
from pelago.core.services.intake import ingest

from .. import limits, strict_input
from ..auth import commit, enter_tenant, public, public_session
from . import Blueprint

#: the largest webhook body accepted, in bytes (ad platforms' callbacks are a few KiB)
MAX_BODY = 64 * 1024

blp = Blueprint(
    "intake", __name__, url_prefix="/api/v1/intake",
    description="Public webhooks of channels: signed submissions from ad platforms and sites",
)


class IntakeResult(Schema):
    lead_id = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(("created", "merged", "replayed")))
    touch_id = fields.Integer(required=True)


@blp.route("/<string:key>", methods=["POST"])
@blp.response(201, IntakeResult, description="a new lead")
@blp.alt_response(200, schema=IntakeResult, description="merged into an existing lead, or a replayed retry")
@blp.doc(
    security=[],
    parameters=[{
        "in": "header", "name": "X-Pelago-Signature", "required": True,
        "schema": {"type": "string", "pattern": "^sha256=[0-9a-fA-F]{64}$"},
        "description": "sha256=<hex HMAC-SHA256 of the raw body, keyed with the channel's secret>",
    }],
    requestBody={
        "required": True,
        "description": f"the sender's JSON object, at most {MAX_BODY} bytes; mapped by the channel's mapping",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
)
@public
def receive(key: str) -> Any:
    """Receive one signed submission from a channel: the public webhook.

    Needs no API key: the body is signed with the channel's secret
    (`X-Pelago-Signature: sha256=<hex HMAC-SHA256 of the raw body>`). Refusals
    store nothing: 413 over 64 KiB, 401 a missing or bad signature, 404 an
    unknown or inactive channel, 400 a body that is not a JSON object, 422 an
    invalid mapped lead. Otherwise `201` created, or `200` merged or
    replayed.
    """
    # One byte of slack: a body without Content-Length (chunked) is cut at the
    # limit by werkzeug, not refused, so read one byte more to tell.
    limits.enforce("intake_address", limits.client_address())  # floods and signature guessing
    request.max_content_length = MAX_BODY + 1
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY:
        abort(413, message=f"the body is larger than {MAX_BODY} bytes")
    header = request.headers.get("X-Pelago-Signature")
    if not svc.well_formed_signature(header):
        abort(401, message="missing or malformed X-Pelago-Signature: send sha256=<hex HMAC-SHA256 of the body>")
    assert header is not None
    session = public_session()
    channel = svc.channel_by_key(session, key)
    if not svc.signature_matches(channel.secret, raw, header):
        abort(401, message="bad signature: sign the exact body bytes with the channel's secret")
    limits.enforce("intake_channel", str(channel.id))  # signed submissions only: no one else can spend it
    payload = _payload(raw)
    c = enter_tenant(channel.tenant_id)
    sub = svc.submission(channel, payload, raw)
    try:
        outcome = ingest(c, [sub], routing=True)[0]
    except Conflict:
        # The same id arrived twice at once and the other request's touch won:
        # roll back and ask again, which replays its result.
        c.session.rollback()
        outcome = ingest(c, [sub], routing=True)[0]
    if outcome.status == "invalid":
        raise InvalidInput("the mapped lead is invalid", outcome.errors or {})
    commit()
    if outcome.touch_id is None:  # pragma: no cover - every stored submission has its touch
        outcome.touch_id = c.session.scalar(select(Touch.id).where(Touch.idempotency_key == sub.key))
    result = {"lead_id": outcome.lead_id, "status": outcome.status, "touch_id": outcome.touch_id}
    return result, 201 if outcome.status == "created" else 200


def _payload(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, read as strictly as every other body (400 otherwise)."""
    try:
        value = strict_input.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        abort(400, message="malformed body: not UTF-8")
    except strict_input.BadInput as exc:
        abort(400, message=f"malformed body: {exc}")
    except ValueError:
        abort(400, message="malformed body: not JSON")
    if not isinstance(value, dict):
        abort(400, message="malformed body: the JSON must be an object")
    return value  # type: ignore[no-any-return]
