"""The built-in adapter, ``generic``: a JSON POST to any endpoint, signed, with an idempotency key.

Shipped as hook implementations of this plugin's own hooks, marked
``trylast`` like Datasette's default plugins: an adapter plugin answering for
another name is asked first, and these answer only for ``generic``.

The body (``Content-Type: application/json``)::

    {"idempotency_key": "pelago-3-41", "event_type": "form", "moment": "valid_lead",
     "click_id": "…", "clicked_at": "…", "occurred_at": "…", "value": "4800.00", "currency": "CNY",
     "channel": "ocean", "attempt": 1}

with the header ``Idempotency-Key`` (the same on every attempt of one
conversion) and, when the account has a secret, ``X-Pelago-Signature:
sha256=<hex HMAC-SHA256 of the body>``. 2xx is accepted, 429 and 5xx are
retried, any other status is a rejection with the body (or its JSON
``message``) kept as the message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pelago.plugin import HookContext, hookimpl, sign_body

NAME = "generic"
FIELDS = ("event_type", "moment", "click_id", "clicked_at", "occurred_at", "value", "currency", "channel", "attempt")


@hookimpl(trylast=True)
def conversions_adapters(ctx: HookContext) -> Sequence[Mapping[str, Any]]:
    return [{"name": NAME, "title": "Any HTTPS endpoint: JSON, signed, with an idempotency key",
             "config": [], "needs_url": True, "needs_secret": False, "idempotent": True}]


@hookimpl(trylast=True)
def conversions_build_request(
    ctx: HookContext, adapter: str, conversion: Mapping[str, Any], account: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    if adapter != NAME:
        return None
    payload = {"idempotency_key": conversion["key"], **{k: conversion[k] for k in FIELDS}}
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Idempotency-Key": str(conversion["key"])}
    if account.get("secret"):
        headers["X-Pelago-Signature"] = sign_body(str(account["secret"]), body)
    return {"url": account["url"], "body": body, "headers": headers}


@hookimpl(trylast=True)
def conversions_parse_answer(
    ctx: HookContext, adapter: str, conversion: Mapping[str, Any], status: int, body: bytes
) -> Mapping[str, Any] | None:
    if adapter != NAME:
        return None
    text = body.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
        message = str(doc.get("message", text)) if isinstance(doc, dict) else text
    except ValueError:
        message = text
    if 200 <= status < 300:
        return {"outcome": "accepted", "message": message[:500]}
    if status == 429 or status >= 500:
        return {"outcome": "retry", "message": f"HTTP {status}: {message[:300]}"}
    return {"outcome": "rejected", "message": f"HTTP {status}: {message[:500]}"}
