"""tenant keys: the primary keys of the lead_score tables and their keys onto tenant tables go through tenant_id

So the schema can be distributed by ``tenant_id`` (docs/operations.md): see
``pelago.plugin.migrate_to_tenant_keys`` (ALTERs on PostgreSQL; on SQLite a
UNIQUE ``(tenant_id, <key>)`` index beside each key).

Revision ID: lead_score_0002
Revises: lead_score_0001
Create Date: 2026-12-05 23:00:00
"""

from collections.abc import Sequence

from pelago.plugin import migrate_to_tenant_keys

revision: str = 'lead_score_0002'
down_revision: str | Sequence[str] | None = 'lead_score_0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = '0010'  # the core's tenant keys

TABLES = (
    "lead_score_score",
)
REFERENCE = ()


def upgrade() -> None:
    migrate_to_tenant_keys(TABLES, REFERENCE)


def downgrade() -> None:
    raise NotImplementedError("tenant keys are not taken back: restore from a backup taken before lead_score_0002")
