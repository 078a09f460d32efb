"""core tables: tenants, users, teams, keys, plugin switches, leads and their
history, deals, the event outbox and periodic runs.

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 21:02:22.055096
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import pelago.core.db

revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('core',)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('core_tenant',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('default_region', sa.String(length=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('plugins_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_tenant')),
    sa.UniqueConstraint('slug', name=op.f('uq_core_tenant_slug'))
    )
    op.create_table('core_event',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('actor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_event_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_event'))
    )
    with op.batch_alter_table('core_event', schema=None) as batch_op:
        batch_op.create_index('ix_core_event_tenant', ['tenant_id', 'id'], unique=False)

    op.create_table('core_periodic_run',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('job', sa.String(length=128), nullable=False),
    sa.Column('last_run_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_periodic_run_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_periodic_run')),
    sa.UniqueConstraint('tenant_id', 'job', name=op.f('uq_core_periodic_run_tenant_id_job'))
    )
    op.create_table('core_team',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.String(length=1000), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_team_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_team')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_core_team_tenant_id_name'))
    )
    op.create_table('core_event_delivery',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('plugin', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('next_attempt_at', pelago.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', pelago.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['core_event.id'], name=op.f('fk_core_event_delivery_event_id_core_event'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_event_delivery_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_event_delivery')),
    sa.UniqueConstraint('event_id', 'plugin', name=op.f('uq_core_event_delivery_event_id_plugin'))
    )
    with op.batch_alter_table('core_event_delivery', schema=None) as batch_op:
        batch_op.create_index('ix_core_event_delivery_due', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_core_event_delivery_tenant', ['tenant_id', 'state', 'id'], unique=False)

    op.create_table('core_user',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('team_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('on_leave', sa.Boolean(), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('created_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(role = 'operator') = (tenant_id IS NULL)", name=op.f('ck_core_user_operator_has_no_tenant')),
    sa.CheckConstraint("role IN ('operator','admin','manager','rep')", name=op.f('ck_core_user_role')),
    sa.ForeignKeyConstraint(['team_id'], ['core_team.id'], name=op.f('fk_core_user_team_id_core_team'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_user_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_user')),
    sa.UniqueConstraint('tenant_id', 'email', name=op.f('uq_core_user_tenant_id_email'))
    )
    with op.batch_alter_table('core_user', schema=None) as batch_op:
        batch_op.create_index('ix_core_user_team', ['tenant_id', 'team_id'], unique=False)
        batch_op.create_index('uq_core_user_operator_email', ['email'], unique=True, postgresql_where=sa.text('tenant_id IS NULL'), sqlite_where=sa.text('tenant_id IS NULL'))

    op.create_table('core_api_key',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', pelago.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_api_key_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['core_user.id'], name=op.f('fk_core_api_key_user_id_core_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_api_key')),
    sa.UniqueConstraint('prefix', name=op.f('uq_core_api_key_prefix'))
    )
    with op.batch_alter_table('core_api_key', schema=None) as batch_op:
        batch_op.create_index('ix_core_api_key_user', ['user_id'], unique=False)

    op.create_table('core_lead',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('source', sa.String(length=100), nullable=True),
    sa.Column('region', sa.String(length=100), nullable=True),
    sa.Column('product', sa.String(length=100), nullable=True),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('lost_reason', sa.String(length=500), nullable=True),
    sa.Column('is_customer', sa.Boolean(), nullable=False),
    sa.Column('owner_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('team_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('locked', sa.Boolean(), nullable=False),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('assigned_at', pelago.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('stage_changed_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_activity_at', pelago.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint("stage <> 'lost' OR lost_reason IS NOT NULL", name=op.f('ck_core_lead_lost_needs_reason')),
    sa.CheckConstraint("stage IN ('new','contacted','qualified','won','lost')", name=op.f('ck_core_lead_stage')),
    sa.CheckConstraint('phone IS NOT NULL OR email IS NOT NULL', name=op.f('ck_core_lead_reachable')),
    sa.ForeignKeyConstraint(['owner_id'], ['core_user.id'], name=op.f('fk_core_lead_owner_id_core_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['team_id'], ['core_team.id'], name=op.f('fk_core_lead_team_id_core_team'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_lead_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_lead'))
    )
    with op.batch_alter_table('core_lead', schema=None) as batch_op:
        batch_op.create_index('ix_core_lead_created', ['tenant_id', 'created_at'], unique=False)
        batch_op.create_index('ix_core_lead_email', ['tenant_id', 'email'], unique=False)
        batch_op.create_index('ix_core_lead_list', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_core_lead_owner', ['tenant_id', 'owner_id', 'id'], unique=False)
        batch_op.create_index('ix_core_lead_source', ['tenant_id', 'source', 'id'], unique=False)
        batch_op.create_index('ix_core_lead_stage', ['tenant_id', 'stage', 'id'], unique=False)
        batch_op.create_index('ix_core_lead_team', ['tenant_id', 'team_id', 'id'], unique=False)
        batch_op.create_index('uq_core_lead_email', ['tenant_id', 'email'], unique=True, postgresql_where=sa.text('phone IS NULL AND email IS NOT NULL'), sqlite_where=sa.text('phone IS NULL AND email IS NOT NULL'))
        batch_op.create_index('uq_core_lead_phone', ['tenant_id', 'phone'], unique=True, postgresql_where=sa.text('phone IS NOT NULL'), sqlite_where=sa.text('phone IS NOT NULL'))

    op.create_table('core_tenant_plugin',
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('plugin', sa.String(length=64), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('settings', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('updated_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('updated_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_tenant_plugin_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['updated_by'], ['core_user.id'], name=op.f('fk_core_tenant_plugin_updated_by_core_user'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('tenant_id', 'plugin', name=op.f('pk_core_tenant_plugin'))
    )
    op.create_table('core_activity',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('occurred_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('created_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint("kind IN ('call','note','visit','wechat','sms','meeting','email')", name=op.f('ck_core_activity_kind')),
    sa.ForeignKeyConstraint(['lead_id'], ['core_lead.id'], name=op.f('fk_core_activity_lead_id_core_lead'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_activity_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['core_user.id'], name=op.f('fk_core_activity_user_id_core_user'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_activity'))
    )
    with op.batch_alter_table('core_activity', schema=None) as batch_op:
        batch_op.create_index('ix_core_activity_lead', ['tenant_id', 'lead_id', 'id'], unique=False)

    op.create_table('core_deal',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('owner_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('team_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('amount', pelago.core.db.Money(precision=18, scale=2), nullable=False),
    sa.Column('refunded', pelago.core.db.Money(precision=18, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('product', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('won_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint("kind IN ('first_purchase','repurchase')", name=op.f('ck_core_deal_kind')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_core_deal_amount_positive')),
    sa.CheckConstraint('refunded >= 0 AND refunded <= amount', name=op.f('ck_core_deal_refund_within_amount')),
    sa.ForeignKeyConstraint(['lead_id'], ['core_lead.id'], name=op.f('fk_core_deal_lead_id_core_lead'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['owner_id'], ['core_user.id'], name=op.f('fk_core_deal_owner_id_core_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['team_id'], ['core_team.id'], name=op.f('fk_core_deal_team_id_core_team'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_deal_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_deal'))
    )
    with op.batch_alter_table('core_deal', schema=None) as batch_op:
        batch_op.create_index('ix_core_deal_lead', ['tenant_id', 'lead_id'], unique=False)
        batch_op.create_index('ix_core_deal_list', ['tenant_id', 'id'], unique=False)

    op.create_table('core_ownership_change',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('from_user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('to_user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('from_team_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('to_team_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('rule', sa.String(length=200), nullable=True),
    sa.Column('note', sa.String(length=1000), nullable=False),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('actor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['core_lead.id'], name=op.f('fk_core_ownership_change_lead_id_core_lead'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_ownership_change_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_ownership_change'))
    )
    with op.batch_alter_table('core_ownership_change', schema=None) as batch_op:
        batch_op.create_index('ix_core_ownership_change_lead', ['tenant_id', 'lead_id', 'id'], unique=False)
        batch_op.create_index('ix_core_ownership_change_to', ['tenant_id', 'to_user_id', 'at'], unique=False)

    op.create_table('core_stage_change',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('old', sa.String(length=16), nullable=True),
    sa.Column('new', sa.String(length=16), nullable=False),
    sa.Column('lost_reason', sa.String(length=500), nullable=True),
    sa.Column('actor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['core_lead.id'], name=op.f('fk_core_stage_change_lead_id_core_lead'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_stage_change_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_stage_change'))
    )
    with op.batch_alter_table('core_stage_change', schema=None) as batch_op:
        batch_op.create_index('ix_core_stage_change_lead', ['tenant_id', 'lead_id', 'id'], unique=False)

    op.create_table('core_touch',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=100), nullable=True),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('source', sa.String(length=100), nullable=True),
    sa.Column('utm_source', sa.String(length=200), nullable=True),
    sa.Column('utm_medium', sa.String(length=200), nullable=True),
    sa.Column('utm_campaign', sa.String(length=200), nullable=True),
    sa.Column('utm_term', sa.String(length=200), nullable=True),
    sa.Column('utm_content', sa.String(length=200), nullable=True),
    sa.Column('click_id', sa.String(length=200), nullable=True),
    sa.Column('merged', sa.Boolean(), nullable=False),
    sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('received_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['core_lead.id'], name=op.f('fk_core_touch_lead_id_core_lead'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_touch_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_touch'))
    )
    with op.batch_alter_table('core_touch', schema=None) as batch_op:
        batch_op.create_index('ix_core_touch_lead', ['tenant_id', 'lead_id', 'id'], unique=False)
        batch_op.create_index('uq_core_touch_idempotency', ['tenant_id', 'idempotency_key'], unique=True, postgresql_where=sa.text('idempotency_key IS NOT NULL'), sqlite_where=sa.text('idempotency_key IS NOT NULL'))

    op.create_table('core_refund',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('deal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount', pelago.core.db.Money(precision=18, scale=2), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('created_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_core_refund_amount_positive')),
    sa.ForeignKeyConstraint(['deal_id'], ['core_deal.id'], name=op.f('fk_core_refund_deal_id_core_deal'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_refund_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_refund'))
    )
    with op.batch_alter_table('core_refund', schema=None) as batch_op:
        batch_op.create_index('ix_core_refund_deal', ['tenant_id', 'deal_id', 'id'], unique=False)



    # The ledgers are append-only, and on PostgreSQL the database says so.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND_ONLY_FUNCTION)
        for table in LEDGERS:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION pelago_append_only()"
            )


LEDGERS = ("core_ownership_change", "core_stage_change", "core_refund")
APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION pelago_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END $$ LANGUAGE plpgsql
"""


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in LEDGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS pelago_append_only()")
    with op.batch_alter_table('core_refund', schema=None) as batch_op:
        batch_op.drop_index('ix_core_refund_deal')

    op.drop_table('core_refund')
    with op.batch_alter_table('core_touch', schema=None) as batch_op:
        batch_op.drop_index('uq_core_touch_idempotency', postgresql_where=sa.text('idempotency_key IS NOT NULL'), sqlite_where=sa.text('idempotency_key IS NOT NULL'))
        batch_op.drop_index('ix_core_touch_lead')

    op.drop_table('core_touch')
    with op.batch_alter_table('core_stage_change', schema=None) as batch_op:
        batch_op.drop_index('ix_core_stage_change_lead')

    op.drop_table('core_stage_change')
    with op.batch_alter_table('core_ownership_change', schema=None) as batch_op:
        batch_op.drop_index('ix_core_ownership_change_to')
        batch_op.drop_index('ix_core_ownership_change_lead')

    op.drop_table('core_ownership_change')
    with op.batch_alter_table('core_deal', schema=None) as batch_op:
        batch_op.drop_index('ix_core_deal_list')
        batch_op.drop_index('ix_core_deal_lead')

    op.drop_table('core_deal')
    with op.batch_alter_table('core_activity', schema=None) as batch_op:
        batch_op.drop_index('ix_core_activity_lead')

    op.drop_table('core_activity')
    op.drop_table('core_tenant_plugin')
    with op.batch_alter_table('core_lead', schema=None) as batch_op:
        batch_op.drop_index('uq_core_lead_phone', postgresql_where=sa.text('phone IS NOT NULL'), sqlite_where=sa.text('phone IS NOT NULL'))
        batch_op.drop_index('uq_core_lead_email', postgresql_where=sa.text('phone IS NULL AND email IS NOT NULL'), sqlite_where=sa.text('phone IS NULL AND email IS NOT NULL'))
        batch_op.drop_index('ix_core_lead_team')
        batch_op.drop_index('ix_core_lead_stage')
        batch_op.drop_index('ix_core_lead_source')
        batch_op.drop_index('ix_core_lead_owner')
        batch_op.drop_index('ix_core_lead_list')
        batch_op.drop_index('ix_core_lead_email')
        batch_op.drop_index('ix_core_lead_created')

    op.drop_table('core_lead')
    with op.batch_alter_table('core_api_key', schema=None) as batch_op:
        batch_op.drop_index('ix_core_api_key_user')

    op.drop_table('core_api_key')
    with op.batch_alter_table('core_user', schema=None) as batch_op:
        batch_op.drop_index('uq_core_user_operator_email', postgresql_where=sa.text('tenant_id IS NULL'), sqlite_where=sa.text('tenant_id IS NULL'))
        batch_op.drop_index('ix_core_user_team')

    op.drop_table('core_user')
    with op.batch_alter_table('core_event_delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_core_event_delivery_tenant')
        batch_op.drop_index('ix_core_event_delivery_due')

    op.drop_table('core_event_delivery')
    op.drop_table('core_team')
    op.drop_table('core_periodic_run')
    with op.batch_alter_table('core_event', schema=None) as batch_op:
        batch_op.drop_index('ix_core_event_tenant')

    op.drop_table('core_event')
    op.drop_table('core_tenant')
