"""The sender, as a job: enqueued when conversions are queued, and every minute for retries and leases."""

from __future__ import annotations

from typing import Any

from pelago.plugin import JobContext

from . import sending


def send(ctx: JobContext) -> dict[str, Any]:
    """``conversions.send``: claim and send every due conversion of the tenant (see :mod:`.sending`)."""
    done = sending.send_due(ctx)
    return {"claimed": done.claimed, **done.counts}
