"""settlement tables: branches, their teams, distribution policies, division state, allocations.

The first revision of the plugin's own Alembic branch (label ``settlement``),
on top of the core revision that created the core tables its foreign keys
point at. No core table is altered. The money side (attribution, commission,
ledger, periods) follows in settlement_0002.

Revision ID: settlement_0001
Revises:
Create Date: 2026-12-04 22:26:34.684662
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import pelago.plugin

revision: str = 'settlement_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('settlement',)
depends_on: str | Sequence[str] | None = '0004'


def upgrade() -> None:
    op.create_table('settlement_branch',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_settlement_branch_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_branch')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_settlement_branch_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_settlement_branch_tenant_id_name'))
    )
    op.create_table('settlement_branch_day',
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('branch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('allocated', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'branch_id'], ['settlement_branch.tenant_id', 'settlement_branch.id'], name=op.f('fk_settlement_branch_day_tenant_id_settlement_branch'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_settlement_branch_day_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'branch_id', 'day', name=op.f('pk_settlement_branch_day'))
    )
    op.create_table('settlement_branch_team',
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('team_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('branch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    pelago.plugin.tenant_key_as_migrated(['team_id'], 'core_team', name=op.f('fk_settlement_branch_team_team_id_core_team'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'branch_id'], ['settlement_branch.tenant_id', 'settlement_branch.id'], name=op.f('fk_settlement_branch_team_tenant_id_settlement_branch'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_settlement_branch_team_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'team_id', name=op.f('pk_settlement_branch_team'))
    )
    with op.batch_alter_table('settlement_branch_team', schema=None) as batch_op:
        batch_op.create_index('ix_settlement_branch_team_branch', ['tenant_id', 'branch_id', 'team_id'], unique=False)

    op.create_table('settlement_policy',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('effective_from', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('effective_to', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('created_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('effective_to IS NULL OR effective_to > effective_from', name=op.f('ck_settlement_policy_range')),
    sa.CheckConstraint('version > 0', name=op.f('ck_settlement_policy_version')),
    sa.ForeignKeyConstraint(['created_by'], ['core_user.id'], name=op.f('fk_settlement_policy_created_by_core_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_settlement_policy_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_policy')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_settlement_policy_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'source', 'version', name=op.f('uq_settlement_policy_tenant_id_source_version'))
    )
    with op.batch_alter_table('settlement_policy', schema=None) as batch_op:
        batch_op.create_index('uq_settlement_policy_open', ['tenant_id', 'source'], unique=True, postgresql_where=sa.text('effective_to IS NULL'), sqlite_where=sa.text('effective_to IS NULL'))

    if op.get_bind().dialect.name == "postgresql":
        # Versions of one (tenant, source) never overlap in time, whoever writes the rows: the
        # plugin's conditional update keeps it so, this keeps hand-written SQL from breaking it.
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            "ALTER TABLE settlement_policy ADD CONSTRAINT ex_settlement_policy_no_overlap EXCLUDE USING gist"
            " (tenant_id WITH =, source WITH =, tstzrange(effective_from, effective_to) WITH &&)"
        )

    op.create_table('settlement_division_state',
    sa.Column('policy_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('current', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'policy_id'], ['settlement_policy.tenant_id', 'settlement_policy.id'], name=op.f('fk_settlement_division_state_tenant_id_settlement_policy'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_settlement_division_state_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('policy_id', name=op.f('pk_settlement_division_state'))
    )
    op.create_table('settlement_policy_entry',
    sa.Column('policy_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('branch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('team_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('weight', sa.Integer(), nullable=False),
    sa.Column('daily_cap', sa.Integer(), nullable=True),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('daily_cap IS NULL OR daily_cap > 0', name=op.f('ck_settlement_policy_entry_daily_cap')),
    sa.CheckConstraint('weight > 0', name=op.f('ck_settlement_policy_entry_weight')),
    pelago.plugin.tenant_key_as_migrated(['team_id'], 'core_team', name=op.f('fk_settlement_policy_entry_team_id_core_team'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['tenant_id', 'branch_id'], ['settlement_branch.tenant_id', 'settlement_branch.id'], name=op.f('fk_settlement_policy_entry_tenant_id_settlement_branch'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['tenant_id', 'policy_id'], ['settlement_policy.tenant_id', 'settlement_policy.id'], name=op.f('fk_settlement_policy_entry_tenant_id_settlement_policy'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_settlement_policy_entry_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('policy_id', 'branch_id', name=op.f('pk_settlement_policy_entry')),
    sa.UniqueConstraint('tenant_id', 'policy_id', 'branch_id', name=op.f('uq_settlement_policy_entry_tenant_id_policy_id_branch_id'))
    )
    with op.batch_alter_table('settlement_policy_entry', schema=None) as batch_op:
        batch_op.create_index('ix_settlement_policy_entry_branch', ['tenant_id', 'branch_id'], unique=False)

    op.create_table('settlement_allocation',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('policy_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('branch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('team_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('lead_key', sa.String(length=260), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'policy_id', 'branch_id'], ['settlement_policy_entry.tenant_id', 'settlement_policy_entry.policy_id', 'settlement_policy_entry.branch_id'], name=op.f('fk_settlement_allocation_tenant_id_settlement_policy_entry'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_settlement_allocation_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_allocation')),
    sa.UniqueConstraint('tenant_id', 'policy_id', 'seq', name=op.f('uq_settlement_allocation_tenant_id_policy_id_seq')),
    postgresql_with={'fillfactor': 80}
    )
    with op.batch_alter_table('settlement_allocation', schema=None) as batch_op:
        batch_op.create_index('ix_settlement_allocation_key', ['tenant_id', 'lead_key'], unique=False)
        batch_op.create_index('ix_settlement_allocation_list', ['tenant_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('settlement_allocation', schema=None) as batch_op:
        batch_op.drop_index('ix_settlement_allocation_list')
        batch_op.drop_index('ix_settlement_allocation_key')

    op.drop_table('settlement_allocation')
    with op.batch_alter_table('settlement_policy_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_settlement_policy_entry_branch')

    op.drop_table('settlement_policy_entry')
    op.drop_table('settlement_division_state')
    with op.batch_alter_table('settlement_policy', schema=None) as batch_op:
        batch_op.drop_index('uq_settlement_policy_open', postgresql_where=sa.text('effective_to IS NULL'), sqlite_where=sa.text('effective_to IS NULL'))

    op.drop_table('settlement_policy')
    with op.batch_alter_table('settlement_branch_team', schema=None) as batch_op:
        batch_op.drop_index('ix_settlement_branch_team_branch')

    op.drop_table('settlement_branch_team')
    op.drop_table('settlement_branch_day')
    op.drop_table('settlement_branch')
