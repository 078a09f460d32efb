"""pool tables: pools, members, pool entries, per-day counters, reminders, sweep runs.

The first revision of the plugin's own Alembic branch (label ``pool``), on
top of the core revision that created ``core_lead``, ``core_team``,
``core_user`` and ``core_tenant`` (its foreign keys point there). No core
table is altered.

Revision ID: pool_0001
Revises:
Create Date: 2026-11-24 23:05:16.090207
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import pelago.plugin

revision: str = 'pool_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('pool',)
depends_on: str | Sequence[str] | None = '0001'


def upgrade() -> None:
    op.create_table('pool_sweep',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('started_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('scanned', sa.Integer(), nullable=False),
    sa.Column('released', sa.Integer(), nullable=False),
    sa.Column('reminded', sa.Integer(), nullable=False),
    sa.Column('vetoed', sa.Integer(), nullable=False),
    sa.Column('batches', sa.Integer(), nullable=False),
    sa.Column('by_rule', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_pool_sweep_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pool_sweep'))
    )
    with op.batch_alter_table('pool_sweep', schema=None) as batch_op:
        batch_op.create_index('ix_pool_sweep_list', ['tenant_id', 'id'], unique=False)

    op.create_table('pool_pool',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('description', sa.String(length=1000), nullable=False),
    sa.Column('team_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('settings', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    pelago.plugin.tenant_key_as_migrated(['team_id'], 'core_team', name=op.f('fk_pool_pool_team_id_core_team'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_pool_pool_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pool_pool')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_pool_pool_tenant_id_name'))
    )
    with op.batch_alter_table('pool_pool', schema=None) as batch_op:
        batch_op.create_index('ix_pool_pool_list', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('uq_pool_pool_default', ['tenant_id'], unique=True, postgresql_where=sa.text('is_default'), sqlite_where=sa.text('is_default'))
        batch_op.create_index('uq_pool_pool_team', ['tenant_id', 'team_id'], unique=True, postgresql_where=sa.text('team_id IS NOT NULL'), sqlite_where=sa.text('team_id IS NOT NULL'))

    op.create_table('pool_member',
    sa.Column('pool_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['pool_id'], ['pool_pool.id'], name=op.f('fk_pool_member_pool_id_pool_pool'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_pool_member_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['core_user.id'], name=op.f('fk_pool_member_user_id_core_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pool_id', 'user_id', name=op.f('pk_pool_member'))
    )
    with op.batch_alter_table('pool_member', schema=None) as batch_op:
        batch_op.create_index('ix_pool_member_user', ['tenant_id', 'user_id'], unique=False)

    op.create_table('pool_rep_day',
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('claims', sa.Integer(), nullable=False),
    sa.Column('views', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_pool_rep_day_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['core_user.id'], name=op.f('fk_pool_rep_day_user_id_core_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'day', name=op.f('pk_pool_rep_day'))
    )
    op.create_table('pool_entry',
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('pool_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entered_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('rule', sa.String(length=100), nullable=True),
    sa.Column('from_user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('released_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('hidden_until', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    pelago.plugin.tenant_key_as_migrated(['lead_id'], 'core_lead', name=op.f('fk_pool_entry_lead_id_core_lead'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['pool_id'], ['pool_pool.id'], name=op.f('fk_pool_entry_pool_id_pool_pool'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_pool_entry_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('lead_id', name=op.f('pk_pool_entry'))
    )
    with op.batch_alter_table('pool_entry', schema=None) as batch_op:
        batch_op.create_index('ix_pool_entry_pool', ['tenant_id', 'pool_id', 'lead_id'], unique=False)

    op.create_table('pool_reminder',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('owner_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('due_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('sent_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    pelago.plugin.tenant_key_as_migrated(['lead_id'], 'core_lead', name=op.f('fk_pool_reminder_lead_id_core_lead'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_pool_reminder_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pool_reminder')),
    sa.UniqueConstraint('lead_id', 'owner_id', 'due_at', name=op.f('uq_pool_reminder_lead_id_owner_id_due_at'))
    )
    with op.batch_alter_table('pool_reminder', schema=None) as batch_op:
        batch_op.create_index('ix_pool_reminder_lead', ['tenant_id', 'lead_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('pool_reminder', schema=None) as batch_op:
        batch_op.drop_index('ix_pool_reminder_lead')

    op.drop_table('pool_reminder')
    with op.batch_alter_table('pool_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_pool_entry_pool')

    op.drop_table('pool_entry')
    op.drop_table('pool_rep_day')
    with op.batch_alter_table('pool_member', schema=None) as batch_op:
        batch_op.drop_index('ix_pool_member_user')

    op.drop_table('pool_member')
    with op.batch_alter_table('pool_pool', schema=None) as batch_op:
        batch_op.drop_index('uq_pool_pool_team', postgresql_where=sa.text('team_id IS NOT NULL'), sqlite_where=sa.text('team_id IS NOT NULL'))
        batch_op.drop_index('uq_pool_pool_default', postgresql_where=sa.text('is_default'), sqlite_where=sa.text('is_default'))
        batch_op.drop_index('ix_pool_pool_list')

    op.drop_table('pool_pool')
    with op.batch_alter_table('pool_sweep', schema=None) as batch_op:
        batch_op.drop_index('ix_pool_sweep_list')

    op.drop_table('pool_sweep')
