"""Periodic jobs: automatic consumption after lessons end (a setting) and expiry of unused hours.

Both are idempotent: a lesson is filled in once (``auto_consumed``), a student
with a roll-call is never charged again, and an account expires once (a
conditional update from ``open`` and a unique ``expire`` line).
"""

from __future__ import annotations

from pelago.plugin import JobContext

from . import attendance, ledger


def consume(ctx: JobContext) -> int:
    return attendance.auto_consume(ctx)


def expire(ctx: JobContext) -> int:
    return ledger.expire(ctx)
