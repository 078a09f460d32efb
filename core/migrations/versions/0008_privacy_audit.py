"""Privacy requests: the audit table, and erasure may scrub the ledgers

``core_privacy_audit`` records every export and erasure of a person (who,
when, which leads; the person only as a salted hash). It is append-only
like the ledgers: on PostgreSQL a trigger refuses UPDATE and DELETE,
erasure or not.

An erasure keeps the ledgers (``core_ownership_change``,
``core_stage_change``, ``core_refund``) but removes the personal data in
them (free-text notes and reasons). ``pelago_append_only()`` therefore lets
an UPDATE through in a transaction that has set ``pelago.erasing`` to
``on`` (``set_config(..., true)``: for that transaction only), which only
``services.privacy.erase`` does; DELETE stays refused.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 22:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import pelago.core.db

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION pelago_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND current_setting('pelago.erasing', true) = 'on' THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END $$ LANGUAGE plpgsql
"""
#: the audit itself is never rewritten, erasure or not
AUDIT_FUNCTION = """
CREATE OR REPLACE FUNCTION core_privacy_audit_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'core_privacy_audit is append-only' USING ERRCODE = 'restrict_violation';
END $$ LANGUAGE plpgsql
"""
#: the function as revision 0001 wrote it
STRICT_FUNCTION = """
CREATE OR REPLACE FUNCTION pelago_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END $$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table('core_privacy_audit',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('actor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('actor', sa.String(length=254), nullable=False),
    sa.Column('subject_kind', sa.String(length=8), nullable=False),
    sa.Column('subject_salt', sa.String(length=32), nullable=False),
    sa.Column('subject_hash', sa.String(length=64), nullable=False),
    sa.Column('lead_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('at', pelago.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint("action IN ('export','erase')", name=op.f('ck_core_privacy_audit_action')),
    sa.CheckConstraint("subject_kind IN ('phone','email')", name=op.f('ck_core_privacy_audit_subject_kind')),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'],
                            name=op.f('fk_core_privacy_audit_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_privacy_audit'))
    )
    with op.batch_alter_table('core_privacy_audit', schema=None) as batch_op:
        batch_op.create_index('ix_core_privacy_audit_list', ['tenant_id', 'id'], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND_ONLY_FUNCTION)
        op.execute(AUDIT_FUNCTION)
        op.execute(
            "CREATE TRIGGER core_privacy_audit_append_only BEFORE UPDATE OR DELETE ON core_privacy_audit "
            "FOR EACH ROW WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION core_privacy_audit_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS core_privacy_audit_append_only ON core_privacy_audit")
        op.execute("DROP FUNCTION IF EXISTS core_privacy_audit_append_only()")
        op.execute(STRICT_FUNCTION)
    with op.batch_alter_table('core_privacy_audit', schema=None) as batch_op:
        batch_op.drop_index('ix_core_privacy_audit_list')
    op.drop_table('core_privacy_audit')
