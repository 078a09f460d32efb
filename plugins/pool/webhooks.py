"""Pool events to the tenant's webhook URL, signed like the core's intake: HMAC-SHA256 of the body.

Called from the pool's event handlers, so the outbox delivers them: after
commit, once per event, retried with backoff when the receiver fails (a
non-2xx answer or no answer raises, and the delivery is marked failed). The
receiver dedupes on ``event_id`` (delivery is at least once).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from pelago.plugin import HookContext

PLUGIN = "pool"
SIGNATURE = "X-Pelago-Signature"
TIMEOUT = 10


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=<hex HMAC-SHA256 of the raw body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send(ctx: HookContext, kind: str, items: Sequence[Mapping[str, Any]]) -> bool:
    """POST ``{event, event_id, tenant, items}`` to the webhook; ``False`` if none is set."""
    settings = ctx.settings(PLUGIN)
    url = settings.get("webhook_url")
    if not url or not items:
        return False
    body = json.dumps(
        {"event": kind, "event_id": ctx.event_id, "tenant": ctx.tenant.slug, "items": [dict(i) for i in items]},
        ensure_ascii=False, separators=(",", ":"), sort_keys=True,
    ).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "pelago-pool",
               "X-Pelago-Event": kind, "X-Pelago-Event-Id": str(ctx.event_id or "")}
    if settings.get("webhook_secret"):
        headers[SIGNATURE] = sign(settings["webhook_secret"], body)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - the tenant's own URL
            status = response.status
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"webhook {url} answered {exc.code}") from None
    if not 200 <= status < 300:
        raise RuntimeError(f"webhook {url} answered {status}")
    return True
