"""accounts keep room on their pages: every roll-call updates its account in place (HOT)

Each consumption, reversal, refund or expiry rewrites its account's row
(``consumed_*``, ``recognised``, ``status``). None of those columns is
indexed, so PostgreSQL can make the new version a heap-only tuple (HOT) on
the same page, without a new entry in each of the table's indexes, but only
when the page has room. At the default fillfactor (100) a page of accounts
is full as soon as they are sold, and every first consumption is a full
update through every index. ``fillfactor = 70`` keeps 30% of each page for
updates. Pages written before this revision keep their layout until they
are rewritten (``VACUUM FULL``); accounts opened from now on get the room.
SQLite has no such setting.

Revision ID: scheduling_0004
Revises: scheduling_0003
Create Date: 2026-12-06 01:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = 'scheduling_0004'
down_revision: str | Sequence[str] | None = 'scheduling_0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE scheduling_account SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE scheduling_account RESET (fillfactor)")
