"""Imports hold a lease: a worker that dies mid-import is replaced, not waited for forever

``lease_until`` is renewed with every committed batch and ``lease_token``
fences a worker whose lease another worker took; ``resume_after_row`` is
where the next worker goes on; ``attempts`` counts the workers that took it.
The scheduler's tick finds running imports with an expired lease through
``ix_core_import_stalled``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 22:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pelago.core.db import UtcDateTime

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("core_import") as batch:
        batch.add_column(sa.Column("lease_until", UtcDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lease_token", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("resume_after_row", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_core_import_stalled", "core_import", ["lease_until"],
                    postgresql_where=sa.text("status = 'running'"), sqlite_where=sa.text("status = 'running'"))


def downgrade() -> None:
    op.drop_index("ix_core_import_stalled", table_name="core_import")
    with op.batch_alter_table("core_import") as batch:
        for column in ("attempts", "resume_after_row", "lease_token", "lease_until"):
            batch.drop_column(column)
