"""conversions tables: accounts, rules, the conversion outbox, spend.

The first revision of the plugin's own Alembic branch (label
``conversions``), on top of core 0007. Foreign keys among these tables carry
``tenant_id``; those to core tables (lead, touch, deal) are single-column. No
core table is altered.

Revision ID: conversions_0001
Revises:
Create Date: 2026-12-04 23:00:13.040955
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import pelago.plugin

revision: str = 'conversions_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('conversions',)
depends_on: str | Sequence[str] | None = '0007'


def upgrade() -> None:
    op.create_table('conversions_account',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('adapter', sa.String(length=40), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('config', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('secret', pelago.plugin.EncryptedString(), nullable=False),
    sa.Column('in_doubt', sa.String(length=8), nullable=False),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint("in_doubt IN ('hold','resend')", name=op.f('ck_conversions_account_in_doubt')),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_conversions_account_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversions_account')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_conversions_account_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_conversions_account_tenant_id_name'))
    )
    op.create_table('conversions_spend',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('channel', sa.String(length=100), nullable=False),
    sa.Column('campaign', sa.String(length=200), nullable=False),
    sa.Column('amount', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('uploaded_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_conversions_spend_amount_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_conversions_spend_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversions_spend')),
    sa.UniqueConstraint('tenant_id', 'day', 'channel', 'campaign', name=op.f('uq_conversions_spend_tenant_id_day_channel_campaign'))
    )
    op.create_table('conversions_rule',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('match', sa.String(length=8), nullable=False),
    sa.Column('channel', sa.String(length=100), nullable=False),
    sa.Column('moment', sa.String(length=16), nullable=False),
    sa.Column('event_type', sa.String(length=100), nullable=False),
    sa.Column('window_days', sa.Integer(), nullable=False),
    sa.Column('click_key', sa.String(length=100), nullable=False),
    sa.Column('touch', sa.String(length=8), nullable=False),
    sa.Column('send_value', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint("match IN ('channel','source')", name=op.f('ck_conversions_rule_match')),
    sa.CheckConstraint("moment IN ('valid_lead','first_contact','qualified','deal_won')", name=op.f('ck_conversions_rule_moment')),
    sa.CheckConstraint("touch IN ('first','last')", name=op.f('ck_conversions_rule_touch')),
    sa.CheckConstraint('window_days >= 1', name=op.f('ck_conversions_rule_window_positive')),
    sa.ForeignKeyConstraint(['tenant_id', 'account_id'], ['conversions_account.tenant_id', 'conversions_account.id'], name=op.f('fk_conversions_rule_tenant_id_conversions_account'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_conversions_rule_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversions_rule')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_conversions_rule_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_conversions_rule_tenant_id_name'))
    )
    with op.batch_alter_table('conversions_rule', schema=None) as batch_op:
        batch_op.create_index('ix_conversions_rule_account', ['tenant_id', 'account_id'], unique=False)

    op.create_table('conversions_conversion',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rule_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('touch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('deal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('channel', sa.String(length=100), nullable=False),
    sa.Column('moment', sa.String(length=16), nullable=False),
    sa.Column('event_type', sa.String(length=100), nullable=False),
    sa.Column('click_id', sa.String(length=500), nullable=False),
    sa.Column('clicked_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('occurred_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('value', pelago.plugin.Money(precision=18, scale=2), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('lease_token', sa.String(length=40), nullable=True),
    sa.Column('lease_until', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('dispatched_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('message', sa.String(length=1000), nullable=False),
    sa.Column('answer_status', sa.Integer(), nullable=True),
    sa.Column('sent_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint("status IN ('queued','sending','sent','accepted','rejected','expired','in_doubt','failed')", name=op.f('ck_conversions_conversion_status')),
    pelago.plugin.tenant_key_as_migrated(['deal_id'], 'core_deal', name=op.f('fk_conversions_conversion_deal_id_core_deal'), ondelete='SET NULL'),
    pelago.plugin.tenant_key_as_migrated(['lead_id'], 'core_lead', name=op.f('fk_conversions_conversion_lead_id_core_lead'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'rule_id'], ['conversions_rule.tenant_id', 'conversions_rule.id'], name=op.f('fk_conversions_conversion_tenant_id_conversions_rule'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_conversions_conversion_tenant_id_core_tenant'), ondelete='CASCADE'),
    pelago.plugin.tenant_key_as_migrated(['touch_id'], 'core_touch', name=op.f('fk_conversions_conversion_touch_id_core_touch'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversions_conversion')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_conversions_conversion_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'rule_id', 'lead_id', name=op.f('uq_conversions_conversion_tenant_id_rule_id_lead_id'))
    )
    with op.batch_alter_table('conversions_conversion', schema=None) as batch_op:
        batch_op.create_index('ix_conversions_conversion_due', ['tenant_id', 'status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_conversions_conversion_lead', ['tenant_id', 'lead_id'], unique=False)
        batch_op.create_index('ix_conversions_conversion_list', ['tenant_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('conversions_conversion', schema=None) as batch_op:
        batch_op.drop_index('ix_conversions_conversion_list')
        batch_op.drop_index('ix_conversions_conversion_lead')
        batch_op.drop_index('ix_conversions_conversion_due')

    op.drop_table('conversions_conversion')
    with op.batch_alter_table('conversions_rule', schema=None) as batch_op:
        batch_op.drop_index('ix_conversions_rule_account')

    op.drop_table('conversions_rule')
    op.drop_table('conversions_spend')
    op.drop_table('conversions_account')
