"""Pool events to the tenant's webhook URL, signed like the core's intake: HMAC-SHA256 of the body.

Called from the pool's event handlers, so the outbox delivers them: after
commit, once per event, retried with backoff when the receiver fails (a
non-2xx answer or no answer raises, and the delivery is marked failed). The
receiver dedupes on ``event_id`` (delivery is at least once).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pelago.plugin import HookContext, post_json

PLUGIN = "pool"
TIMEOUT = 10


def send(ctx: HookContext, kind: str, items: Sequence[Mapping[str, Any]]) -> bool:
    """POST ``{event, event_id, tenant, items}`` to the webhook; ``False`` if none is set.

    ``post_json`` refuses private and loopback targets (unless the operator
    allows them) with the address resolved now, not when the URL was saved.
    """
    settings = ctx.settings(PLUGIN)
    url = settings.get("webhook_url")
    if not url or not items:
        return False
    body = json.dumps(
        {"event": kind, "event_id": ctx.event_id, "tenant": ctx.tenant.slug, "items": [dict(i) for i in items]},
        ensure_ascii=False, separators=(",", ":"), sort_keys=True,
    ).encode()
    headers = {"User-Agent": "pelago-pool", "X-Pelago-Event": kind, "X-Pelago-Event-Id": str(ctx.event_id or "")}
    answer = post_json(url, body, headers=headers, secret=settings.get("webhook_secret") or None, timeout=TIMEOUT)
    if not answer.ok:
        raise RuntimeError(f"webhook {url} answered {answer.status}")
    return True
