"""Per user and day counters, raised by conditional upserts the database decides.

``INSERT … ON CONFLICT (tenant_id, user_id, day) DO UPDATE SET claims = claims + n
WHERE claims + n <= limit RETURNING claims``: the row lock makes concurrent
claims of one user take turns, and the ``WHERE`` re-reads the latest count, so
no interleaving can pass the limit (no read-then-write). The same row is the
lock that serialises one user's hold-cap checks (:func:`lock_user`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from pelago.plugin import HookContext, per_transaction

from .models import RepDay
from .rules import local_day

T = RepDay.__table__


def dialect_insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:  # pragma: no cover
        raise NotImplementedError(f"pool does not support {dialect}")
    return insert


def today(ctx: HookContext, now: datetime | None = None) -> date:
    """Today in the tenant's calendar: what "per day" means for claims and views (``now``: the caller's now)."""
    return local_day(ctx.tenant.tz, ctx.now() if now is None else now)


def _upsert(ctx: HookContext, user_id: int, column: str, n: int, limit: int | None) -> int | None:
    insert = dialect_insert(ctx.session)
    values = {"tenant_id": ctx.tenant.id, "user_id": user_id, "day": today(ctx), "claims": 0, "views": 0}
    values[column] = n
    stmt = insert(T).values(**values)
    grown = T.c[column] + stmt.excluded[column]
    stmt = stmt.on_conflict_do_update(
        index_elements=[T.c.tenant_id, T.c.user_id, T.c.day],
        set_={column: grown},
        where=(grown <= limit) if limit is not None else None,
    ).returning(T.c[column])
    got = ctx.session.execute(stmt).scalar()
    remember_lock(ctx, user_id)
    return got  # type: ignore[no-any-return]


def add_claims(ctx: HookContext, user_id: int, n: int, limit: int | None) -> int | None:
    """Count ``n`` claims for today; the new total, or ``None`` if that would pass ``limit``."""
    if limit is not None and n > limit:
        return None
    return _upsert(ctx, user_id, "claims", n, limit)


def views_so_far(ctx: HookContext, user_id: int) -> int:
    """Today's pool views of the user, with the user's row locked until commit."""
    return _upsert(ctx, user_id, "views", 0, None) or 0


def add_views(ctx: HookContext, user_id: int, n: int) -> None:
    if n:
        _upsert(ctx, user_id, "views", n, None)


def lock_user(ctx: HookContext, user_id: int) -> None:
    """Hold the user's row for today until commit (once per transaction)."""
    if user_id not in _locked(ctx):
        _upsert(ctx, user_id, "claims", 0, None)


def _locked(ctx: HookContext) -> set[int]:
    return per_transaction(ctx.session, "pool_locked_users").setdefault("users", set())  # type: ignore[no-any-return]


def remember_lock(ctx: HookContext, user_id: int) -> None:
    """Note that this transaction holds the user's row for today (it upserted it)."""
    _locked(ctx).add(user_id)
