"""core_emit(): the outbox write as a database function (PostgreSQL)

One event row and one pending delivery per subscribing plugin, the same
writes :func:`pelago.core.events.emit` makes. The core's ``emit`` calls it on
PostgreSQL, and a plugin's own database function may call it to emit in the
same round trip as its change (the pool's ``pool_take`` does), so the
outbox's shape stays defined by the core alone. SQLite has no functions; the
core writes the rows itself there.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 02:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EMIT_FUNCTION = """
CREATE OR REPLACE FUNCTION core_emit(
    p_tenant_id bigint, p_name text, p_items jsonb, p_actor_id bigint, p_at timestamptz, p_plugins text[]
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO core_event (tenant_id, name, payload, actor_id, created_at)
    VALUES (p_tenant_id, p_name, jsonb_build_object('items', p_items), p_actor_id, p_at)
    RETURNING id INTO v_id;
    INSERT INTO core_event_delivery (tenant_id, event_id, plugin, state, attempts, next_attempt_at)
    SELECT p_tenant_id, v_id, plugin, 'pending', 0, p_at FROM unnest(p_plugins) AS plugin;
    RETURN v_id;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(EMIT_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS core_emit(bigint, text, jsonb, bigint, timestamptz, text[])")
