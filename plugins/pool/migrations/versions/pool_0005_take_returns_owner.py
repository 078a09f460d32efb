"""pool_take() also returns the new owner as the hooks see them (PostgreSQL)

A claim asks ``check_assign`` about its leads with the claimer as the new
owner (a ``UserInfo``). The service used to load the user as an ORM object
for that: one more round trip and an ORM load whenever the user was not
already in the session (after every lost race the session's rollback
expires it), the largest single cost of a claim after its own call. The
summary row's ``attributes`` now carries the user's row as JSON when
leads were taken; nothing else changes (same signature, same columns).

Revision ID: pool_0005
Revises: pool_0004
Create Date: 2026-12-06 02:00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = 'pool_0005'
down_revision: str | Sequence[str] | None = 'pool_0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUMMARY = """    RETURN QUERY SELECT 'summary'::text, NULL::bigint, NULL::text, NULL::text, NULL::text, NULL::text,
        NULL::text, NULL::text, NULL::jsonb, NULL::bigint, NULL::text, NULL::boolean, NULL::boolean,
        NULL::bigint, NULL::bigint, NULL::timestamptz, NULL::bigint, NULL::timestamptz, NULL::timestamptz,
        v_claims, v_removed, v_version, v_event;
END $$"""

SUMMARY_WITH_OWNER = """    RETURN QUERY SELECT 'summary'::text, NULL::bigint, NULL::text, NULL::text, NULL::text, NULL::text,
        NULL::text, NULL::text,
        -- the new owner as check_assign sees them, when leads were taken (no second round trip for it)
        CASE WHEN cardinality(v_taken) > 0 THEN (
            SELECT jsonb_build_object('id', u.id, 'role', u.role, 'email', u.email, 'name', u.name,
                                      'team_id', u.team_id, 'active', u.active, 'on_leave', u.on_leave,
                                      'daily_capacity', u.daily_capacity, 'weight', u.weight,
                                      'working_hours', u.working_hours)
            FROM core_user AS u WHERE u.id = p_user_id AND u.tenant_id = p_tenant_id) END,
        NULL::bigint, NULL::text, NULL::boolean, NULL::boolean,
        NULL::bigint, NULL::bigint, NULL::timestamptz, NULL::bigint, NULL::timestamptz, NULL::timestamptz,
        v_claims, v_removed, v_version, v_event;
END $$"""


def _pool_0004_take_function() -> str:
    path = Path(__file__).with_name("pool_0004_tenant_keys.py")
    spec = importlib.util.spec_from_file_location("pool_0004", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module._take_function())


def take_function() -> str:
    """pool_0004's ``pool_take()`` with the new owner in the summary row."""
    old = _pool_0004_take_function()
    assert old.count(SUMMARY) == 1
    return old.replace(SUMMARY, SUMMARY_WITH_OWNER)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(take_function())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_pool_0004_take_function())
