"""Effective-dated versions of rules and plans: append a version, close the open one, never overlap.

A new version must start after every earlier version of the same subject
started, and after any earlier version that is closed has ended. It closes
the open version at its own start, by a conditional UPDATE (``WHERE
effective_to IS NULL AND effective_from < :new``), and takes the next
version number; the unique ``(…, version)`` and the partial unique index on
the open version make a concurrent second writer fail (409) instead of
creating an overlap.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from pelago.plugin import HookContext, InvalidInput, flush_or_conflict


def append(ctx: HookContext, model: Any, where: list[Any], values: dict[str, Any], what: str) -> Any:
    start: datetime = values["effective_from"]
    latest = ctx.session.execute(
        select(func.max(model.version), func.max(model.effective_from), func.max(model.effective_to)).where(*where)
    ).one()
    top, last_from, last_to = latest
    if last_from is not None and start <= last_from:
        raise InvalidInput(
            f"effective_from overlaps {what} version {top}, in effect from {last_from.isoformat()}",
            {"effective_from": [f"must be after {last_from.isoformat()} (the latest version's start)"]},
        )
    if last_to is not None and start < last_to:
        raise InvalidInput(
            f"effective_from overlaps a closed {what} version, in effect until {last_to.isoformat()}",
            {"effective_from": [f"must be at or after {last_to.isoformat()}"]},
        )
    ctx.session.execute(
        update(model).where(*where, model.effective_to.is_(None), model.effective_from < start)
        .values(effective_to=start).execution_options(synchronize_session=False)
    )
    row = model(tenant_id=ctx.tenant.id, version=(top or 0) + 1, effective_to=None, created_at=ctx.now(), **values)
    ctx.session.add(row)
    flush_or_conflict(ctx.session, f"another {what} version was written meanwhile; reload and retry")
    return row
