"""Retention: indexes for the sweep of done webhook submissions and outbound posts

The ``retention`` job (``pelago.core.retention``) deletes processed and
failed submissions by ``received_at`` and sent and failed posts by
``created_at``; these indexes find them without reading the tables.
Not unique, so not tenant-first: the sweep runs across tenants.

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-05 23:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0014'
down_revision: str | Sequence[str] | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_core_submission_age', 'core_submission', ['status', 'received_at'], unique=False)
    op.create_index('ix_core_outbound_post_age', 'core_outbound_post', ['status', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_core_outbound_post_age', table_name='core_outbound_post')
    op.drop_index('ix_core_submission_age', table_name='core_submission')
