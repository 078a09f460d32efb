"""Tenant keys: every tenant table's primary key, unique keys and keys between tenant tables go through tenant_id

So the schema can be distributed by ``tenant_id`` (Citus; docs/operations.md).
On PostgreSQL each table below gets the primary key ``(tenant_id, id)`` and
every foreign key onto it (plugins' too) or from it onto another tenant
table becomes ``(tenant_id, x_id) -> (tenant_id, id)``; see
:func:`pelago.core.tenant_keys.migrate_to_tenant_keys`. Plain ALTERs: the
rows stay. On SQLite (never distributed) the keys stay and a UNIQUE
``(tenant_id, id)`` index is added beside each, for keys through the
tenant to point at.

``core_event_delivery``'s unique ``(event_id, plugin)`` becomes
``(tenant_id, event_id, plugin)`` (event ids are unique: same meaning).

Reference tables (no tenant key: read before the tenant is known):
``core_tenant``, ``core_user``, ``core_api_key``, ``core_channel``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 22:30:00
"""

from collections.abc import Sequence

from alembic import op

from pelago.core.tenant_keys import migrate_to_tenant_keys

revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "core_team", "core_lead", "core_touch", "core_activity", "core_ownership_change", "core_stage_change",
    "core_deal", "core_refund", "core_import", "core_import_error", "core_event", "core_event_delivery",
    "core_periodic_run", "core_privacy_audit", "core_routing_rule", "core_submission",
)
REFERENCE = ("core_channel",)


def upgrade() -> None:
    with op.batch_alter_table("core_event_delivery") as batch:  # on SQLite a copy: nothing points at it
        batch.drop_constraint("uq_core_event_delivery_event_id_plugin", type_="unique")
        batch.create_unique_constraint(
            "uq_core_event_delivery_tenant_id_event_id_plugin", ["tenant_id", "event_id", "plugin"])
    migrate_to_tenant_keys(TABLES, REFERENCE)


def downgrade() -> None:
    raise NotImplementedError("tenant keys are not taken back: restore from a backup taken before 0010")
