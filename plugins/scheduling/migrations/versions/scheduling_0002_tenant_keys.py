"""tenant keys: the primary keys of the scheduling tables and their keys onto tenant tables go through tenant_id

So the schema can be distributed by ``tenant_id`` (docs/operations.md): see
``pelago.plugin.migrate_to_tenant_keys`` (ALTERs on PostgreSQL; on SQLite a
UNIQUE ``(tenant_id, <key>)`` index beside each key).

``scheduling_busy_no_overlap`` gets ``tenant_id WITH =`` first: Citus
enforces an exclusion constraint only when it includes the distribution
column with ``=``. The meaning is unchanged (resource ids are unique across
tenants).

Revision ID: scheduling_0002
Revises: scheduling_0001
Create Date: 2026-12-05 23:00:00
"""

from collections.abc import Sequence

from alembic import op

from pelago.plugin import migrate_to_tenant_keys

revision: str = 'scheduling_0002'
down_revision: str | Sequence[str] | None = 'scheduling_0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = '0010'  # the core's tenant keys

TABLES = (
    "scheduling_campus",
    "scheduling_course",
    "scheduling_package",
    "scheduling_room",
    "scheduling_teacher",
    "scheduling_class",
    "scheduling_student",
    "scheduling_account",
    "scheduling_series",
    "scheduling_enrolment",
    "scheduling_lesson",
    "scheduling_attendance",
    "scheduling_busy",
    "scheduling_participant",
    "scheduling_trial",
    "scheduling_entry",
)
REFERENCE = ('scheduling_feed_token',)


def upgrade() -> None:
    migrate_to_tenant_keys(TABLES, REFERENCE)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE scheduling_busy DROP CONSTRAINT scheduling_busy_no_overlap")
        op.execute(
            "ALTER TABLE scheduling_busy ADD CONSTRAINT scheduling_busy_no_overlap EXCLUDE USING gist "
            "(tenant_id WITH =, resource_id WITH =, resource WITH =, tstzrange(starts_at, ends_at, '[)') WITH &&)"
        )


def downgrade() -> None:
    raise NotImplementedError("tenant keys are not taken back: restore from a backup taken before scheduling_0002")
