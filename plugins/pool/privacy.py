"""The pool's part of privacy requests: what it holds about a person, and erasing it.

The pool holds ids mostly: which pool a lead is in, since when, its last
owner, and the reminders sent before a recycle. The personal parts are the
free-text ``note`` of an entry (a release or distribution note) and the very
fact that this person sits in a pool to be claimed. The reference for plugin
authors: export what you hold through ``privacy_export``; on ``person_erased``
delete or blank it, idempotently (a delivery can run twice), whether or not
the plugin is on for the tenant (the event reaches plugins switched off too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select

from pelago.plugin import HookContext

from .models import Pool, PoolEntry, Reminder


def export(ctx: HookContext, lead_ids: Sequence[int]) -> dict[str, Any] | None:
    """The pool entries and recycle reminders of ``lead_ids``; ``None`` when the pool holds nothing."""
    entries = ctx.session.execute(
        select(PoolEntry, Pool.name).join(Pool, Pool.id == PoolEntry.pool_id)
        .where(PoolEntry.lead_id.in_(lead_ids)).order_by(PoolEntry.lead_id)
    ).all()
    reminders = ctx.session.scalars(
        select(Reminder).where(Reminder.lead_id.in_(lead_ids)).order_by(Reminder.id)
    ).all()
    if not entries and not reminders:
        return None
    return {
        "entries": [
            {"lead_id": e.lead_id, "pool_id": e.pool_id, "pool": name, "entered_at": e.entered_at,
             "reason": e.reason, "rule": e.rule, "from_user_id": e.from_user_id, "released_at": e.released_at,
             "hidden_until": e.hidden_until, "note": e.note}
            for e, name in entries
        ],
        "reminders": [
            {"lead_id": r.lead_id, "owner_id": r.owner_id, "due_at": r.due_at, "rule": r.rule, "sent_at": r.sent_at}
            for r in reminders
        ],
    }


def erase(ctx: HookContext, lead_ids: Sequence[int]) -> None:
    """Take the erased leads out of their pools (nobody is to claim and call them) and drop their reminders.

    Deleting is idempotent: a second delivery finds nothing left.
    """
    if not lead_ids:
        return
    ctx.session.execute(delete(PoolEntry).where(PoolEntry.lead_id.in_(lead_ids)))
    ctx.session.execute(delete(Reminder).where(Reminder.lead_id.in_(lead_ids)))
