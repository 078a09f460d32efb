"""Outbound posts: webhooks queued in a transaction, sent after it commits under a lease

``core_outbound_post`` holds the POSTs to tenants' URLs (the pool's
webhook, plugins' through ``pelago.plugin.queue_post``) that an event
handler used to send inside its delivery transaction, where a slow
receiver held that transaction (on SQLite, the one write lock) open.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 22:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import pelago.core.db
from pelago.core.tenant_keys import migrate_to_tenant_keys

revision: str = '0011'
down_revision: str | Sequence[str] | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('core_outbound_post',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('plugin', sa.String(length=64), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('headers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('timeout', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', pelago.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('lease_token', sa.String(length=40), nullable=True),
    sa.Column('lease_until', pelago.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('answer_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('event_id', BIG_ID, nullable=True),
    sa.Column('created_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', pelago.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('tenant_id', BIG_ID, nullable=False),
    sa.CheckConstraint("status IN ('queued','sending','sent','failed')", name=op.f('ck_core_outbound_post_status')),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'],
                            name=op.f('fk_core_outbound_post_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_outbound_post'))
    )
    with op.batch_alter_table('core_outbound_post', schema=None) as batch_op:
        batch_op.create_index('ix_core_outbound_post_due', ['status', 'next_attempt_at'], unique=False)
    migrate_to_tenant_keys(("core_outbound_post",))  # (tenant_id, id), as every tenant table (0010)


def downgrade() -> None:
    with op.batch_alter_table('core_outbound_post', schema=None) as batch_op:
        batch_op.drop_index('ix_core_outbound_post_due')
    op.drop_table('core_outbound_post')
