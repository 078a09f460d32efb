"""tenant keys: the primary keys of the pool tables and their keys onto tenant tables go through tenant_id

So the schema can be distributed by ``tenant_id`` (docs/operations.md): see
``pelago.plugin.migrate_to_tenant_keys`` (ALTERs on PostgreSQL; on SQLite a
UNIQUE ``(tenant_id, <key>)`` index beside each key).

``pool_reminder``'s unique (lead, owner, due) gets ``tenant_id`` first, and
``pool_take()`` upserts the day's claims on ``(tenant_id, user_id, day)``.

Revision ID: pool_0004
Revises: pool_0003
Create Date: 2026-12-05 23:00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

from pelago.plugin import migrate_to_tenant_keys

revision: str = 'pool_0004'
down_revision: str | Sequence[str] | None = 'pool_0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = '0010'  # the core's tenant keys

TABLES = (
    "pool_sweep",
    "pool_pool",
    "pool_member",
    "pool_rep_day",
    "pool_entry",
    "pool_reminder",
)
REFERENCE = ()


def upgrade() -> None:
    with op.batch_alter_table("pool_reminder") as batch:  # on SQLite a copy: nothing points at it
        batch.drop_constraint("uq_pool_reminder_lead_id_owner_id_due_at", type_="unique")
        batch.create_unique_constraint(
            "uq_pool_reminder_tenant_id_lead_id_owner_id_due_at", ["tenant_id", "lead_id", "owner_id", "due_at"])
    migrate_to_tenant_keys(TABLES, REFERENCE)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_take_function())  # its day counter's ON CONFLICT names the new key


def downgrade() -> None:
    raise NotImplementedError("tenant keys are not taken back: restore from a backup taken before pool_0004")


def _take_function() -> str:
    """pool_0003's ``pool_take()``, upserting the day's claims on ``(tenant_id, user_id, day)``."""
    path = Path(__file__).with_name("pool_0003_take_through_core.py")
    spec = importlib.util.spec_from_file_location("pool_0003", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    old = "ON CONFLICT (user_id, day)"
    assert old in module.TAKE_FUNCTION
    return str(module.TAKE_FUNCTION).replace(old, "ON CONFLICT (tenant_id, user_id, day)")
