"""Webhook submissions: accepted in one INSERT, routed afterwards in micro-batches

``core_submission`` holds each signed webhook submission from the moment it
is accepted (the webhook answers 202 with its id) until a router has taken
it through the intake line (``status`` ``processed`` with ``outcome``,
``lead_id``, ``touch_id``; or ``failed`` with ``errors``). ``(tenant_id,
key)`` is unique: a retried external id finds the first submission.
``ix_core_submission_pending`` is the routers' queue; ``ix_core_submission_dedupe``
lets a router skip a phone whose earlier submission another router holds.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import pelago.core.db

revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    doc = pelago.core.db.JsonDoc
    op.create_table('core_submission',
    sa.Column('id', big, nullable=False),
    sa.Column('channel_id', big, nullable=True),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('dedupe', sa.String(length=254), nullable=True),
    sa.Column('data', doc, nullable=False),
    sa.Column('touch', doc, nullable=False),
    sa.Column('raw', doc, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('lead_id', big, nullable=True),
    sa.Column('touch_id', big, nullable=True),
    sa.Column('errors', doc, nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('lease_until', pelago.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('lease_token', sa.String(length=32), nullable=True),
    sa.Column('received_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('processed_at', pelago.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('tenant_id', big, nullable=False),
    sa.CheckConstraint("status IN ('accepted','processed','failed')", name=op.f('ck_core_submission_status')),
    sa.ForeignKeyConstraint(['channel_id'], ['core_channel.id'], name=op.f('fk_core_submission_channel_id_core_channel'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['lead_id'], ['core_lead.id'], name=op.f('fk_core_submission_lead_id_core_lead'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_submission_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_submission')),
    sa.UniqueConstraint('tenant_id', 'key', name=op.f('uq_core_submission_tenant_id_key'))
    )
    op.create_index('ix_core_submission_pending', 'core_submission', ['id'], unique=False,
                    postgresql_where=sa.text("status = 'accepted'"), sqlite_where=sa.text("status = 'accepted'"))
    op.create_index('ix_core_submission_dedupe', 'core_submission', ['tenant_id', 'dedupe', 'id'], unique=False,
                    postgresql_where=sa.text("status = 'accepted'"), sqlite_where=sa.text("status = 'accepted'"))


def downgrade() -> None:
    op.drop_index('ix_core_submission_dedupe', table_name='core_submission')
    op.drop_index('ix_core_submission_pending', table_name='core_submission')
    op.drop_table('core_submission')
