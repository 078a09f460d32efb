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

Then the submission is stored as it is (one INSERT, ``core_submission``; on
PostgreSQL in autocommit: no BEGIN and COMMIT round trips) and
answered ``202`` with its id; a router takes it through the same intake line
as the API and the imports (dedupe, routing by the tenant's settings, touch,
ledger, events) right after, off the request (see
:mod:`pelago.core.services.submissions`). ``GET /api/v1/submissions/{id}``
shows what became of it.
"""

from __future__ import annotations

from typing import Any, cast

from flask import request
from flask_smorest import abort
from marshmallow import Schema, fields, validate
from sqlalchemy import Table, select

from pelago.core.errors import InvalidInput
from pelago.core.models import Channel, Tenant
from pelago.core.services import channels as svc
from pelago.core.services import submissions

from .. import limits, strict_input
from ..auth import ctx, public, public_session, requires, runtime
from . import Blueprint
from .schemas import LocalTime

#: the largest webhook body accepted, in bytes (ad platforms' callbacks are a few KiB)
MAX_BODY = 64 * 1024

blp = Blueprint(
    "intake", __name__, url_prefix="/api/v1/intake",
    description="Public webhooks of channels: signed submissions from ad platforms and sites",
)


STATES = ("accepted", "processed", "failed")
OUTCOMES = ("created", "merged", "replayed")


class SubmissionResult(Schema):
    """A webhook submission: ``accepted`` (stored, not yet routed), then ``processed`` or ``failed``."""

    id = fields.Integer(required=True, metadata={"description": "the submission's id: GET /api/v1/submissions/{id}"})
    status = fields.String(required=True, validate=validate.OneOf(STATES))
    outcome = fields.String(allow_none=True, validate=validate.OneOf(OUTCOMES), metadata={
        "description": "once processed: created (a new lead), merged (into a known lead) or replayed "
                       "(its idempotency key was already stored)",
    })
    lead_id = fields.Integer(allow_none=True, metadata={"description": "the lead it made or merged into"})
    touch_id = fields.Integer(allow_none=True)


class SubmissionDetail(SubmissionResult):
    channel_id = fields.Integer(allow_none=True, metadata={"description": "null once the channel is deleted"})
    key = fields.String(required=True, metadata={"description": "the idempotency key"})
    errors = fields.Dict(allow_none=True, metadata={"description": "why it failed, by field"})
    attempts = fields.Integer(required=True, metadata={"description": "routers that took it"})
    received_at = LocalTime(required=True)
    processed_at = LocalTime(allow_none=True)


@blp.route("/<string:key>", methods=["POST"])
@blp.response(202, SubmissionResult, description="stored; a router takes it through intake right after")
@blp.alt_response(200, schema=SubmissionResult, description="a retry: the first submission with this id, as it is now")
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
    invalid mapped lead. Otherwise the submission is stored and answered `202`
    with its id (`status: "accepted"`); a router routes it right after. A retry
    (same external id, or the same body without one) answers `200` with the
    first submission as it is now (`processed`, with its `lead_id`, once routed).
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
    rt = runtime()
    if rt.engine.dialect.name == "postgresql":
        # Two statements, each atomic by itself: no BEGIN and COMMIT round trips. The router is
        # started once the INSERT has returned (it is committed then).
        with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            result, fresh = _accept(conn, key, raw, header)
        if fresh:
            try:
                rt.queue.kick(submissions.ROUTE_JOB)
            except Exception:  # noqa: BLE001 - it is stored; the scheduler's tick starts a router too
                rt.log.exception("could not start a router for submission %s; the tick will", result["id"])
    else:
        # SQLite: through the session, whose transaction takes the write gate; the router starts after commit.
        session = public_session()
        result, fresh = _accept(session.connection(), key, raw, header)
        if fresh:
            session.info[submissions.KICK] = True
        session.commit()
    return result, 202 if fresh else 200, {"Location": f"/api/v1/submissions/{result['id']}"}


def _accept(conn: Any, key: str, raw: bytes, header: str) -> tuple[dict[str, Any], bool]:
    """Find the channel, check the signature, map and check the payload, store it: the submission's
    answer, and whether it is new (``False``: a retry of a stored key)."""
    channel, region = _channel(conn, key)
    if not svc.signature_matches(channel.secret, raw, header):
        abort(401, message="bad signature: sign the exact body bytes with the channel's secret")
    limits.enforce("intake_channel", str(channel.id))  # signed submissions only: no one else can spend it
    payload = _payload(raw)
    sub = svc.submission(channel, payload, raw)
    dedupe, errors = submissions.check(sub, region)
    if errors:
        raise InvalidInput("the mapped lead is invalid", errors)
    sid, fresh = submissions.accept(conn, tenant_id=channel.tenant_id, channel_id=channel.id, sub=sub,
                                    dedupe=dedupe, now=runtime().clock())
    if fresh:
        return {"id": sid, "status": "accepted", "outcome": None, "lead_id": None, "touch_id": None}, True
    return submissions.state(conn, sid), False


def _channel(conn: Any, key: str) -> tuple[Channel, str]:
    """The active channel with this key (detached, for reading) and its tenant's default phone
    region: one query, no ORM session."""
    if not svc.KEY_SHAPE.match(key):
        abort(404, message="no such channel")
    table = cast(Table, Channel.__table__)
    row = conn.execute(
        select(table, Tenant.default_region).join(Tenant, Tenant.id == table.c.tenant_id).where(table.c.key == key)
    ).first()
    if row is None or not row.active:
        abort(404, message="no such channel")
    values = row._asdict()
    region = values.pop("default_region")
    return Channel(**values), region


sub_blp = Blueprint(
    "submissions", __name__, url_prefix="/api/v1/submissions",
    description="Webhook submissions: what became of each (accepted, then processed or failed)",
)


@sub_blp.route("/<int:submission_id>")
@sub_blp.response(200, SubmissionDetail)
@requires("manager")
def read_submission(submission_id: int) -> Any:
    """One webhook submission of the tenant: its status and, once routed, its outcome and lead (manager).

    `accepted`: stored, waiting for a router (usually well under a second);
    `processed`: routed, with `outcome` (`created`, `merged` or `replayed`),
    `lead_id` and `touch_id`; `failed`: refused at routing, with `errors`.
    Another tenant's submission answers 404.
    """
    return submissions.get_submission(ctx(), submission_id)


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
