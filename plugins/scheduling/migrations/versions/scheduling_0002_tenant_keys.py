"""tenant keys: the primary keys of the scheduling tables and their keys onto tenant tables go through tenant_id

So the schema can be distributed by ``tenant_id`` (docs/operations.md): see
``pelago.plugin.migrate_to_tenant_keys`` (ALTERs on PostgreSQL; on SQLite a
UNIQUE ``(tenant_id, <key>)`` index beside each key).

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


def downgrade() -> None:
    raise NotImplementedError("tenant keys are not taken back: restore from a backup taken before scheduling_0002")
