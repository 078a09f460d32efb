"""Pool events to the tenant's webhook URL, signed like the core's intake: HMAC-SHA256 of the body.

Called from the pool's event handlers, which run inside their delivery's
transaction; so the POST is *queued* there (``queue_post``) and sent after
that commits, under a lease, retried with backoff when the receiver fails
(a non-2xx answer or none). A slow receiver then holds no transaction (on
SQLite, the write lock every API caller needs). The receiver dedupes on
``event_id`` (delivery is at least once).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pelago.plugin import HookContext, queue_post

PLUGIN = "pool"
TIMEOUT = 10


def send(ctx: HookContext, kind: str, items: Sequence[Mapping[str, Any]]) -> bool:
    """Queue a POST of ``{event, event_id, tenant, items}`` to the webhook; ``False`` if none is set.

    The sender refuses private and loopback targets (unless the operator
    allows them) with the address resolved when it sends, not when the URL
    was saved.
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
    queue_post(ctx, url, body, headers=headers, secret=settings.get("webhook_secret") or None, timeout=TIMEOUT,
               plugin=PLUGIN)
    return True
