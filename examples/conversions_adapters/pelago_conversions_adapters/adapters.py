"""The two adapters: build each platform's documented request from a conversion, and read its answer.

**Ocean Engine** (巨量引擎), conversion API v2: ``POST`` JSON to
``https://analytics.oceanengine.com/api/v2/conversion``::

    {"event_type": "form", "context": {"ad": {"callback": "<clickid>"}}, "timestamp": 1772416800000,
     "properties": {"pay_amount": 4800.00}}

``callback`` is the landing page's ``clickid`` (or the tracking link's
``__CALLBACK_PARAM__``), which the rule's ``click_key`` finds on the touch;
``timestamp`` the moment, in milliseconds; ``properties`` only for a value
(``pay_amount`` in yuan, or in fen when the account's config says
``amount_unit: fen``) and, when the account's config names it,
``class_purchase_amount`` (the education property: full-price courses
bought, sent as 1 for a won deal). The answer ``{"code": 0, …}`` is
accepted; any other code is a rejection with its ``message``.

**Kuaishou** (快手): the callback endpoint
``http://ad.partner.gifshow.com/track/activate`` with the query parameters
``callback``, ``event_type``, ``event_time`` (13-digit milliseconds) and,
for a value, ``purchase_amount`` (yuan). Pelago's guarded sender only
POSTs, so the parameters travel in the query string of a POST with an
empty JSON object as its body. ``{"result": 1}`` is accepted; anything else
is a rejection with the platform's ``error_msg``.

Neither platform documents an idempotency key for these calls nor a way to
ask whether it has a conversion, so ``idempotent`` is false: an account on
these adapters should keep ``in_doubt: hold`` (the default).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from pelago.plugin import HookContext, hookimpl

OCEAN = "ocean_engine"
KUAISHOU = "kuaishou"
OCEAN_URL = "https://analytics.oceanengine.com/api/v2/conversion"
KUAISHOU_URL = "http://ad.partner.gifshow.com/track/activate"


def _millis(iso: str) -> int:
    at = datetime.fromisoformat(iso)
    return int(at.timestamp()) * 1000 + at.microsecond // 1000


def _amount(value: str, unit: str) -> str:
    """A decimal string as the JSON number text the platform wants (no float on the way)."""
    amount = Decimal(value)
    return str(int(amount * 100)) if unit == "fen" else str(amount.quantize(Decimal("0.01")))


@hookimpl
def conversions_adapters(ctx: HookContext) -> Sequence[Mapping[str, Any]]:
    return [
        {"name": OCEAN, "title": "Ocean Engine (巨量引擎) conversion API v2", "config": [], "needs_url": False,
         "needs_secret": False, "idempotent": False, "personal": []},
        {"name": KUAISHOU, "title": "Kuaishou (快手) conversion callback", "config": [], "needs_url": False,
         "needs_secret": False, "idempotent": False, "personal": []},
    ]


@hookimpl
def conversions_build_request(
    ctx: HookContext, adapter: str, conversion: Mapping[str, Any], account: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    config = account.get("config") or {}
    if adapter == OCEAN:
        # Built as text so that the amount stays the exact decimal it is (json would need a float).
        parts = [f'"event_type":{json.dumps(conversion["event_type"], ensure_ascii=False)}',
                 f'"context":{{"ad":{{"callback":{json.dumps(conversion["click_id"], ensure_ascii=False)}}}}}',
                 f'"timestamp":{_millis(conversion["occurred_at"])}']
        props = []
        if conversion.get("value") is not None:
            props.append(f'"pay_amount":{_amount(conversion["value"], config.get("amount_unit", "yuan"))}')
            if config.get("class_purchase_amount") == "1":
                props.append('"class_purchase_amount":1')
        if props:
            parts.append('"properties":{' + ",".join(props) + "}")
        return {"url": account.get("url") or OCEAN_URL, "body": ("{" + ",".join(parts) + "}").encode(),
                "headers": {}}
    if adapter == KUAISHOU:
        query = {"callback": conversion["click_id"], "event_type": conversion["event_type"],
                 "event_time": str(_millis(conversion["occurred_at"]))}
        if conversion.get("value") is not None:
            query["purchase_amount"] = _amount(conversion["value"], "yuan")
        base = account.get("url") or KUAISHOU_URL
        return {"url": f"{base}{'&' if '?' in base else '?'}{urlencode(query)}", "body": b"{}", "headers": {}}
    return None


@hookimpl
def conversions_parse_answer(
    ctx: HookContext, adapter: str, conversion: Mapping[str, Any], status: int, body: bytes
) -> Mapping[str, Any] | None:
    if adapter not in (OCEAN, KUAISHOU):
        return None
    if status == 429 or status >= 500:
        return {"outcome": "retry", "message": f"HTTP {status}"}
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return {"outcome": "rejected", "message": f"HTTP {status}: not a JSON object: {body[:200]!r}"}
    if adapter == OCEAN:
        if status == 200 and doc.get("code") == 0:
            return {"outcome": "accepted", "message": str(doc.get("message", ""))}
        return {"outcome": "rejected", "message": f"code {doc.get('code')}: {doc.get('message', '')}"}
    if status == 200 and doc.get("result") == 1:
        return {"outcome": "accepted", "message": ""}
    return {"outcome": "rejected",
            "message": f"result {doc.get('result')}: {doc.get('error_msg') or doc.get('msg') or ''}"}
