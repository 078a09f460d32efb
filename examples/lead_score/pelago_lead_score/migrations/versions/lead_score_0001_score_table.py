"""lead_score tables: a score per lead.

The first revision of the plugin's own Alembic branch: no ``down_revision``,
the branch label ``lead_score``, and ``depends_on`` the core revision that
created ``core_lead`` and ``core_tenant`` (its foreign keys point there).

Revision ID: lead_score_0001
Revises: 
Create Date: 2026-11-24 21:10:20.654048
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import pelago.plugin

revision: str = 'lead_score_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('lead_score',)
depends_on: str | Sequence[str] | None = '0001'


def upgrade() -> None:
    op.create_table('lead_score_score',
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('activities', sa.Integer(), nullable=False),
    sa.Column('oldest_activity_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    pelago.plugin.tenant_key_as_migrated(['lead_id'], 'core_lead', name=op.f('fk_lead_score_score_lead_id_core_lead'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_lead_score_score_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('lead_id', name=op.f('pk_lead_score_score'))
    )
    with op.batch_alter_table('lead_score_score', schema=None) as batch_op:
        batch_op.create_index('ix_lead_score_score_oldest', ['tenant_id', 'oldest_activity_at'], unique=False)
        batch_op.create_index('ix_lead_score_score_top', ['tenant_id', 'score', 'lead_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('lead_score_score', schema=None) as batch_op:
        batch_op.drop_index('ix_lead_score_score_top')
        batch_op.drop_index('ix_lead_score_score_oldest')

    op.drop_table('lead_score_score')
