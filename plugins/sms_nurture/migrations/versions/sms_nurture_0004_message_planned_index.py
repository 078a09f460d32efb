"""sms_nurture: index the messages by when they were planned

The console's dashboard panel counts a tenant's messages of the last 7 days
by ``planned_at``; without this index that count read every message the
tenant ever had.

Revision ID: sms_nurture_0004
Revises: sms_nurture_0003
Create Date: 2026-12-06 02:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = 'sms_nurture_0004'
down_revision: str | Sequence[str] | None = 'sms_nurture_0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_sms_nurture_message_planned', 'sms_nurture_message', ['tenant_id', 'planned_at'])


def downgrade() -> None:
    op.drop_index('ix_sms_nurture_message_planned', table_name='sms_nurture_message')
