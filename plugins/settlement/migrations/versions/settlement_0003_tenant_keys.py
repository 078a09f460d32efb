"""tenant keys: the primary keys of the settlement tables and their keys onto tenant tables go through tenant_id

So the schema can be distributed by ``tenant_id`` (docs/operations.md): see
``pelago.plugin.migrate_to_tenant_keys`` (ALTERs on PostgreSQL; on SQLite a
UNIQUE ``(tenant_id, <key>)`` index beside each key).

Revision ID: settlement_0003
Revises: settlement_0002
Create Date: 2026-12-05 23:00:00
"""

from collections.abc import Sequence

from pelago.plugin import migrate_to_tenant_keys

revision: str = 'settlement_0003'
down_revision: str | Sequence[str] | None = 'settlement_0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = '0010'  # the core's tenant keys

TABLES = (
    "settlement_branch",
    "settlement_period",
    "settlement_plan",
    "settlement_policy",
    "settlement_rule",
    "settlement_division_state",
    "settlement_policy_entry",
    "settlement_allocation",
    "settlement_credit_set",
    "settlement_deal",
    "settlement_credit_line",
    "settlement_refund",
    "settlement_entry",
)
REFERENCE = ()


def upgrade() -> None:
    migrate_to_tenant_keys(TABLES, REFERENCE)


def downgrade() -> None:
    raise NotImplementedError("tenant keys are not taken back: restore from a backup taken before settlement_0003")
