"""Deliveries found by their event: an index on ``core_event_delivery (event_id)``

A delivery job knows its events' ids, not their tenants, and claims their
pending or failed deliveries by ``event_id``. The table's unique index starts
with ``tenant_id`` and the other two with ``state`` or ``tenant_id``, so the
claim read every pending or failed delivery of every tenant, and failed
deliveries that gave up are kept: the claim grew with them. Event ids are
unique across tenants (one sequence), so the index needs no ``tenant_id`` to
find a job's rows (a non-unique index distributes by tenant as it is).
A plain ``CREATE INDEX`` blocks writes to the table while it builds; where the table is large,
build it first with ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` (docs/operations.md), and this
revision finds it there.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 09:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0016'
down_revision: str | Sequence[str] | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # IF NOT EXISTS: an operator with a large table builds it first, CONCURRENTLY (docs/operations.md)
    op.create_index("ix_core_event_delivery_event", "core_event_delivery", ["event_id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_core_event_delivery_event", table_name="core_event_delivery")
