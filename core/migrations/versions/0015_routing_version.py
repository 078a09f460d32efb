"""Routing: a configuration version per tenant, for the routing configuration cache

``core_routing_version`` holds one counter per tenant, bumped in the same
transaction as any change to the tenant's routing settings, rules, teams or
users (``pelago.core.db``'s ``before_flush`` listener). Every process keeps
the tenant's routing configuration cached per version
(``pelago.core.routing_config``), so an edit reaches the next request of
every app server and worker. No row means version 0.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 01:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | Sequence[str] | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'core_routing_version',
        sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('version', sa.BigInteger(), server_default='0', nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_core_routing_version_tenant_id_core_tenant'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_core_routing_version')),
    )


def downgrade() -> None:
    op.drop_table('core_routing_version')
