"""sms_nurture tables: templates, sequences, steps, enrolments, the outbox, phones and their evidence.

The first revision of the plugin's own Alembic branch (label ``sms_nurture``),
on top of the core (foreign keys to ``core_lead`` and ``core_tenant``). No core
table is altered. The plugin's own foreign keys carry ``tenant_id``.

Revision ID: sms_nurture_0001
Revises:
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import pelago.plugin

revision: str = 'sms_nurture_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('sms_nurture',)
depends_on: str | Sequence[str] | None = '0004'


def upgrade() -> None:
    op.create_table('sms_nurture_evidence',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('text', sa.String(length=1000), nullable=False),
    sa.Column('at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_sms_nurture_evidence_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_nurture_evidence'))
    )
    with op.batch_alter_table('sms_nurture_evidence', schema=None) as batch_op:
        batch_op.create_index('ix_sms_nurture_evidence_phone', ['tenant_id', 'phone', 'id'], unique=False)

    op.create_table('sms_nurture_inbound',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('text', sa.String(length=1000), nullable=False),
    sa.Column('received_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('opt_out', sa.Boolean(), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_sms_nurture_inbound_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_nurture_inbound'))
    )
    with op.batch_alter_table('sms_nurture_inbound', schema=None) as batch_op:
        batch_op.create_index('ix_sms_nurture_inbound_phone', ['tenant_id', 'phone', 'id'], unique=False)

    op.create_table('sms_nurture_log_sent',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('our_id', sa.String(length=64), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('sent_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_sms_nurture_log_sent_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_nurture_log_sent')),
    sa.UniqueConstraint('tenant_id', 'our_id', name=op.f('uq_sms_nurture_log_sent_tenant_id_our_id'))
    )
    op.create_table('sms_nurture_phone',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('consent_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('consent_source', sa.String(length=100), nullable=True),
    sa.Column('consent_text', sa.String(length=1000), nullable=True),
    sa.Column('suppressed_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('suppressed_source', sa.String(length=100), nullable=True),
    sa.Column('suppressed_text', sa.String(length=1000), nullable=True),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_sms_nurture_phone_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_nurture_phone')),
    sa.UniqueConstraint('tenant_id', 'phone', name=op.f('uq_sms_nurture_phone_tenant_id_phone'))
    )
    with op.batch_alter_table('sms_nurture_phone', schema=None) as batch_op:
        batch_op.create_index('ix_sms_nurture_phone_suppressed', ['tenant_id', 'suppressed_at', 'id'], unique=False)

    op.create_table('sms_nurture_sequence',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('trigger', sa.String(length=32), nullable=False),
    sa.Column('trigger_hours', sa.Integer(), nullable=True),
    sa.Column('trigger_reasons', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_sms_nurture_sequence_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_nurture_sequence')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_sms_nurture_sequence_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_sms_nurture_sequence_tenant_id_name'))
    )
    with op.batch_alter_table('sms_nurture_sequence', schema=None) as batch_op:
        batch_op.create_index('ix_sms_nurture_sequence_trigger', ['tenant_id', 'status', 'trigger'], unique=False)

    op.create_table('sms_nurture_template',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('body', sa.String(length=1000), nullable=False),
    sa.Column('provider_template_id', sa.String(length=100), nullable=True),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_sms_nurture_template_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_nurture_template')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_sms_nurture_template_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_sms_nurture_template_tenant_id_name'))
    )
    op.create_table('sms_nurture_step',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sequence_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('template_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('delay_minutes', sa.Integer(), nullable=False),
    sa.Column('delay_from', sa.String(length=16), nullable=False),
    sa.Column('window_start', sa.String(length=5), nullable=True),
    sa.Column('window_end', sa.String(length=5), nullable=True),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'sequence_id'], ['sms_nurture_sequence.tenant_id', 'sms_nurture_sequence.id'], name=op.f('fk_sms_nurture_step_tenant_id_sms_nurture_sequence'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'template_id'], ['sms_nurture_template.tenant_id', 'sms_nurture_template.id'], name=op.f('fk_sms_nurture_step_tenant_id_sms_nurture_template')),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_sms_nurture_step_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_nurture_step')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_sms_nurture_step_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'sequence_id', 'position', name=op.f('uq_sms_nurture_step_tenant_id_sequence_id_position'))
    )
    op.create_table('sms_nurture_enrolment',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sequence_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pass_key', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('enrolled_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('next_position', sa.Integer(), nullable=False),
    sa.Column('next_due_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    pelago.plugin.tenant_key_as_migrated(['lead_id'], 'core_lead', name=op.f('fk_sms_nurture_enrolment_lead_id_core_lead'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'sequence_id'], ['sms_nurture_sequence.tenant_id', 'sms_nurture_sequence.id'], name=op.f('fk_sms_nurture_enrolment_tenant_id_sms_nurture_sequence'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_sms_nurture_enrolment_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_nurture_enrolment')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_sms_nurture_enrolment_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'lead_id', 'sequence_id', 'pass_key', name='uq_sms_nurture_enrolment_pass')
    )
    with op.batch_alter_table('sms_nurture_enrolment', schema=None) as batch_op:
        batch_op.create_index('ix_sms_nurture_enrolment_due', ['tenant_id', 'next_due_at'], unique=False, postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'"))
        batch_op.create_index('ix_sms_nurture_enrolment_sequence', ['tenant_id', 'sequence_id', 'id'], unique=False)
        batch_op.create_index('uq_sms_nurture_enrolment_active', ['tenant_id', 'lead_id', 'sequence_id'], unique=True, postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'"))

    op.create_table('sms_nurture_message',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('our_id', sa.String(length=64), nullable=False),
    sa.Column('enrolment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('step_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sequence_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('rank', sa.SmallInteger(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.Column('planned_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('due_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('segments', sa.SmallInteger(), nullable=True),
    sa.Column('provider', sa.String(length=32), nullable=True),
    sa.Column('provider_id', sa.String(length=100), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_until', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('claimed_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('capped_on', sa.Date(), nullable=True),
    sa.Column('sent_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('final_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    pelago.plugin.tenant_key_as_migrated(['lead_id'], 'core_lead', name=op.f('fk_sms_nurture_message_lead_id_core_lead'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'enrolment_id'], ['sms_nurture_enrolment.tenant_id', 'sms_nurture_enrolment.id'], name=op.f('fk_sms_nurture_message_tenant_id_sms_nurture_enrolment'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'step_id'], ['sms_nurture_step.tenant_id', 'sms_nurture_step.id'], name=op.f('fk_sms_nurture_message_tenant_id_sms_nurture_step'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_sms_nurture_message_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_nurture_message')),
    sa.UniqueConstraint('tenant_id', 'enrolment_id', 'step_id', name=op.f('uq_sms_nurture_message_tenant_id_enrolment_id_step_id')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_sms_nurture_message_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'our_id', name=op.f('uq_sms_nurture_message_tenant_id_our_id'))
    )
    with op.batch_alter_table('sms_nurture_message', schema=None) as batch_op:
        batch_op.create_index('ix_sms_nurture_message_due', ['tenant_id', 'due_at'], unique=False, postgresql_where=sa.text("status = 'queued'"), sqlite_where=sa.text("status = 'queued'"))
        batch_op.create_index('ix_sms_nurture_message_lead', ['tenant_id', 'lead_id', 'id'], unique=False)
        batch_op.create_index('ix_sms_nurture_message_lease', ['tenant_id', 'lease_until'], unique=False, postgresql_where=sa.text("status = 'sending'"), sqlite_where=sa.text("status = 'sending'"))
        batch_op.create_index('ix_sms_nurture_message_phone', ['tenant_id', 'phone', 'capped_on'], unique=False)
        batch_op.create_index('ix_sms_nurture_message_provider', ['tenant_id', 'provider_id'], unique=False)
        batch_op.create_index('ix_sms_nurture_message_sequence', ['tenant_id', 'sequence_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sms_nurture_message', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_nurture_message_sequence')
        batch_op.drop_index('ix_sms_nurture_message_provider')
        batch_op.drop_index('ix_sms_nurture_message_phone')
        batch_op.drop_index('ix_sms_nurture_message_lease', postgresql_where=sa.text("status = 'sending'"), sqlite_where=sa.text("status = 'sending'"))
        batch_op.drop_index('ix_sms_nurture_message_lead')
        batch_op.drop_index('ix_sms_nurture_message_due', postgresql_where=sa.text("status = 'queued'"), sqlite_where=sa.text("status = 'queued'"))

    op.drop_table('sms_nurture_message')
    with op.batch_alter_table('sms_nurture_enrolment', schema=None) as batch_op:
        batch_op.drop_index('uq_sms_nurture_enrolment_active', postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'"))
        batch_op.drop_index('ix_sms_nurture_enrolment_sequence')
        batch_op.drop_index('ix_sms_nurture_enrolment_due', postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'"))

    op.drop_table('sms_nurture_enrolment')
    op.drop_table('sms_nurture_step')
    op.drop_table('sms_nurture_template')
    with op.batch_alter_table('sms_nurture_sequence', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_nurture_sequence_trigger')

    op.drop_table('sms_nurture_sequence')
    with op.batch_alter_table('sms_nurture_phone', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_nurture_phone_suppressed')

    op.drop_table('sms_nurture_phone')
    op.drop_table('sms_nurture_log_sent')
    with op.batch_alter_table('sms_nurture_inbound', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_nurture_inbound_phone')

    op.drop_table('sms_nurture_inbound')
    with op.batch_alter_table('sms_nurture_evidence', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_nurture_evidence_phone')

    op.drop_table('sms_nurture_evidence')
