"""The two providers ``sms_nurture`` ships, as implementations of its own hooks.

``log`` (the default, and the embedded mode's): "sends" by writing
``sms_nurture_log_sent`` (one row per our id, so it is idempotent itself) and
the application log, in the transaction that records the send. ``http``: a
generic JSON-over-HTTPS gateway, the shape many aggregators offer — one signed
``POST`` per message carrying our id, a status endpoint that answers by our id,
and receipts and replies posted back signed with the same secret. Both are
``trylast``: a provider plugin never has to out-rank them.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select

from pelago.plugin import Forbidden, HookContext, InvalidInput, OutboundRefused, hookimpl, post_json, sign_body, upsert

from .hookspecs import OutgoingSms, WebhookRequest
from .models import LogSent

PLUGIN = "sms_nurture"
SIGNATURE = "x-pelago-signature"
TIMEOUT = 5  # within dispatch.SEND_SECONDS
log = logging.getLogger("pelago.sms_nurture")


# --- log ------------------------------------------------------------------------------------


@hookimpl(trylast=True)
def sms_nurture_send(ctx: HookContext, provider: str, messages: Sequence[OutgoingSms]) -> list[dict[str, Any]] | None:
    if provider == "log":
        return _log_send(ctx, messages)
    if provider == "http":
        return [_http_send(ctx, m) for m in messages]
    return None


@hookimpl(trylast=True)
def sms_nurture_query(
    ctx: HookContext, provider: str, messages: Sequence[OutgoingSms]
) -> dict[str, dict[str, Any]] | None:
    if provider == "log":
        ids = [m.our_id for m in messages]
        found = set(ctx.session.scalars(select(LogSent.our_id).where(LogSent.our_id.in_(ids))))
        return {i: {"status": "accepted" if i in found else "not_found", "provider_id": f"log-{i}" if i in found else None}
                for i in ids}
    if provider == "http":
        return _http_query(ctx, messages)
    return None


@hookimpl(trylast=True)
def sms_nurture_parse_receipt(ctx: HookContext, provider: str, request: WebhookRequest) -> list[dict[str, Any]] | None:
    if provider not in ("log", "http"):
        return None
    body = _signed_json(ctx, request)
    receipts = body.get("receipts")
    if not isinstance(receipts, list):
        raise InvalidInput("a receipt body is {\"receipts\": [...]}", {"receipts": ["required, a list"]})
    return [{"our_id": r.get("id"), "provider_id": r.get("provider_id"), "status": r.get("status"),
             "at": r.get("at"), "error": r.get("error")} for r in receipts if isinstance(r, dict)]


@hookimpl(trylast=True)
def sms_nurture_parse_inbound(ctx: HookContext, provider: str, request: WebhookRequest) -> list[dict[str, Any]] | None:
    if provider not in ("log", "http"):
        return None
    body = _signed_json(ctx, request)
    replies = body.get("messages")
    if not isinstance(replies, list):
        raise InvalidInput("an inbound body is {\"messages\": [...]}", {"messages": ["required, a list"]})
    return [{"phone": r.get("from"), "text": r.get("text"), "at": r.get("at")} for r in replies if isinstance(r, dict)]


def _log_send(ctx: HookContext, messages: Sequence[OutgoingSms]) -> list[dict[str, Any]]:
    now = ctx.now()
    upsert(ctx.session, LogSent, [{"our_id": m.our_id, "phone": m.phone, "body": m.text, "sent_at": now}
                                  for m in messages], key=["tenant_id", "our_id"], update=[])
    for m in messages:
        log.info("sms to %s (%s): %s", m.phone, m.our_id, m.text)
    return [{"our_id": m.our_id, "status": "accepted", "provider_id": f"log-{m.our_id}"} for m in messages]


# --- http -----------------------------------------------------------------------------------


def _http_send(ctx: HookContext, m: OutgoingSms) -> dict[str, Any]:
    """``accepted``, ``rejected`` (the gateway said no: safe to record as failed) or ``unknown`` (reconcile)."""
    settings = ctx.settings(PLUGIN)
    url = settings.get("http_send_url")
    if not url:
        return {"our_id": m.our_id, "status": "rejected", "error": "no http_send_url set"}
    body = json.dumps({"id": m.our_id, "to": m.phone, "text": m.text, "template_id": m.template_id,
                       "variables": dict(m.variables)}, ensure_ascii=False, separators=(",", ":")).encode()
    try:
        answer = post_json(url, body, secret=settings.get("http_secret") or None, timeout=TIMEOUT,
                           headers={"User-Agent": "pelago-sms", "Idempotency-Key": m.our_id})
    except OutboundRefused as exc:
        return {"our_id": m.our_id, "status": "rejected", "error": f"refused: {exc}"}
    except OSError as exc:  # no answer: it may or may not have been accepted
        return {"our_id": m.our_id, "status": "unknown", "error": f"no answer: {exc}"}
    if 200 <= answer.status < 300:
        try:
            provider_id = json.loads(answer.body or b"{}").get("id")
        except (ValueError, AttributeError):
            provider_id = None
        return {"our_id": m.our_id, "status": "accepted", "provider_id": provider_id and str(provider_id)}
    if 400 <= answer.status < 500 and answer.status not in (408, 409, 429):
        return {"our_id": m.our_id, "status": "rejected", "error": f"gateway answered {answer.status}"}
    return {"our_id": m.our_id, "status": "unknown", "error": f"gateway answered {answer.status}"}


def _http_query(ctx: HookContext, messages: Sequence[OutgoingSms]) -> dict[str, dict[str, Any]]:
    settings = ctx.settings(PLUGIN)
    url = settings.get("http_status_url")
    unknown = {m.our_id: {"status": "unknown"} for m in messages}
    if not url:
        return unknown
    body = json.dumps({"ids": [m.our_id for m in messages]}, separators=(",", ":")).encode()
    try:
        answer = post_json(url, body, secret=settings.get("http_secret") or None, timeout=TIMEOUT,
                           headers={"User-Agent": "pelago-sms"})
        found = json.loads(answer.body or b"{}").get("messages", {}) if answer.ok else {}
    except (OSError, OutboundRefused, ValueError, AttributeError):
        return unknown
    out: dict[str, dict[str, Any]] = {}
    for m in messages:
        item = found.get(m.our_id) if isinstance(found, dict) else None
        out[m.our_id] = dict(item) if isinstance(item, Mapping) else {"status": "unknown"}
    return out


def _signed_json(ctx: HookContext, request: WebhookRequest) -> dict[str, Any]:
    """The body, if signed with the tenant's ``http_secret`` (``X-Pelago-Signature: sha256=…``); else 403."""
    secret = ctx.settings(PLUGIN).get("http_secret")
    given = request.headers.get(SIGNATURE, "")
    if not secret or not given or not hmac.compare_digest(given, sign_body(secret, request.body)):
        raise Forbidden("missing or bad X-Pelago-Signature: sign the raw body with the tenant's http_secret")
    try:
        value = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("the body is not UTF-8 JSON", {"body": ["not JSON"]}) from None
    if not isinstance(value, dict):
        raise InvalidInput("the body must be a JSON object", {"body": ["not an object"]})
    return value
