"""tenant keys: the primary keys of the sms_nurture tables and their keys onto tenant tables go through tenant_id

So the schema can be distributed by ``tenant_id`` (docs/operations.md): see
``pelago.plugin.migrate_to_tenant_keys`` (ALTERs on PostgreSQL; on SQLite a
UNIQUE ``(tenant_id, <key>)`` index beside each key).

Revision ID: sms_nurture_0003
Revises: sms_nurture_0002
Create Date: 2026-12-05 23:00:00
"""

from collections.abc import Sequence

from pelago.plugin import migrate_to_tenant_keys

revision: str = 'sms_nurture_0003'
down_revision: str | Sequence[str] | None = 'sms_nurture_0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = '0010'  # the core's tenant keys

TABLES = (
    "sms_nurture_erased_suppression",
    "sms_nurture_evidence",
    "sms_nurture_inbound",
    "sms_nurture_log_sent",
    "sms_nurture_phone",
    "sms_nurture_salt",
    "sms_nurture_sequence",
    "sms_nurture_template",
    "sms_nurture_step",
    "sms_nurture_enrolment",
    "sms_nurture_message",
)
REFERENCE = ()


def upgrade() -> None:
    migrate_to_tenant_keys(TABLES, REFERENCE)


def downgrade() -> None:
    raise NotImplementedError("tenant keys are not taken back: restore from a backup taken before sms_nurture_0003")
