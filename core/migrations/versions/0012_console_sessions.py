"""The web console's sessions: server-side, with expiry and a CSRF token

A browser keeps a random token in a cookie; ``core_console_session`` keeps
its SHA-256, the user and tenant, the CSRF token of its forms, the chosen
language and when it expires (sliding: each request moves it on).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pelago.core.db import UtcDateTime

revision: str = '0012'
down_revision: str | Sequence[str] | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'core_console_session',
        sa.Column('id', BigId, nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('tenant_id', BigId, nullable=False),
        sa.Column('user_id', BigId, nullable=False),
        sa.Column('csrf_token', sa.String(length=64), nullable=False),
        sa.Column('locale', sa.String(length=8), nullable=True),
        sa.Column('notice', sa.String(length=1000), nullable=True),
        sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'],
                                name=op.f('fk_core_console_session_tenant_id_core_tenant'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['core_user.id'],
                                name=op.f('fk_core_console_session_user_id_core_user'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_core_console_session')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_core_console_session_token_hash')),
    )
    op.create_index('ix_core_console_session_user', 'core_console_session', ['user_id'])
    op.create_index('ix_core_console_session_expires', 'core_console_session', ['expires_at'])


def downgrade() -> None:
    op.drop_index('ix_core_console_session_expires', table_name='core_console_session')
    op.drop_index('ix_core_console_session_user', table_name='core_console_session')
    op.drop_table('core_console_session')
