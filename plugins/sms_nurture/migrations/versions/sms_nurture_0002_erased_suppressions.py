"""sms_nurture privacy: the tenant's salt and the suppressions of erased people, kept as keyed hashes

An erased person's phone leaves every sms table; if it was suppressed, the
suppression stays as HMAC-SHA256(the tenant's salt, the E.164 number) in
``sms_nurture_erased_suppression``, which the dispatch checks before sending.
The salt (one per tenant, ``sms_nurture_salt``) is made on first use.

Revision ID: sms_nurture_0002
Revises: sms_nurture_0001
Create Date: 2026-12-04 23:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import pelago.plugin

revision: str = 'sms_nurture_0002'
down_revision: str | Sequence[str] | None = 'sms_nurture_0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sms_nurture_salt',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_sms_nurture_salt_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_nurture_salt')),
    sa.UniqueConstraint('tenant_id', name=op.f('uq_sms_nurture_salt_tenant_id'))
    )
    op.create_table('sms_nurture_erased_suppression',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('phone_hash', sa.String(length=64), nullable=False),
    sa.Column('suppressed_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('erased_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_sms_nurture_erased_suppression_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_nurture_erased_suppression')),
    sa.UniqueConstraint('tenant_id', 'phone_hash', name=op.f('uq_sms_nurture_erased_suppression_tenant_id_phone_hash'))
    )


def downgrade() -> None:
    op.drop_table('sms_nurture_erased_suppression')
    op.drop_table('sms_nurture_salt')
