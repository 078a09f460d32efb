"""core_take(): unowned leads to one user, as a database function (PostgreSQL)

The write of :func:`pelago.core.ownership.take_unowned` in one call: the
conditional ``UPDATE`` of the leads still unowned, one ledger row each and
one ``lead_assigned`` event through ``core_emit``. The core calls it on
PostgreSQL; a plugin's own database function may call it to take leads in
the same round trip as its own writes (the pool's ``pool_take`` does), so
the lead row, the ledger and the event item stay defined by the core alone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 20:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TAKE_FUNCTION = """
CREATE OR REPLACE FUNCTION core_take(
    p_tenant_id bigint, p_lead_ids bigint[], p_user_id bigint, p_team_id bigint, p_now timestamptz,
    p_reason text, p_rule text, p_note text, p_detail jsonb, p_actor_id bigint, p_item jsonb, p_plugins text[]
) RETURNS TABLE (
    id bigint, name text, phone text, email text, source text, region text, product text, attributes jsonb,
    team_id bigint, stage text, is_customer boolean, locked boolean, event_id bigint
) LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_items jsonb := '[]';
    r record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM core_user AS u WHERE u.id = p_user_id AND u.tenant_id = p_tenant_id) THEN
        RAISE EXCEPTION 'core_take: user % is not a user of tenant %', p_user_id, p_tenant_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    -- one row per lead taken (event_id NULL), then one summary row: id NULL, the event's id
    FOR r IN
        WITH taken AS (
            UPDATE core_lead AS l
            SET owner_id = p_user_id, team_id = COALESCE(p_team_id, l.team_id),
                assigned_at = p_now, updated_at = p_now, version = l.version + 1
            WHERE l.tenant_id = p_tenant_id AND l.id = ANY(p_lead_ids) AND l.owner_id IS NULL
            RETURNING l.id, l.name, l.phone, l.email, l.source, l.region, l.product, l.attributes, l.team_id,
                      l.stage, l.is_customer, l.locked
        ), ledger AS (
            INSERT INTO core_ownership_change (tenant_id, lead_id, from_user_id, to_user_id, from_team_id,
                                               to_team_id, reason, rule, note, detail, actor_id, at)
            SELECT p_tenant_id, taken.id, NULL, p_user_id, NULL, taken.team_id, p_reason, p_rule, p_note,
                   p_detail, p_actor_id, p_now
            FROM taken
        )
        SELECT * FROM taken ORDER BY taken.id
    LOOP
        v_items := v_items || (jsonb_build_object(
            'lead_id', r.id, 'from_user_id', NULL, 'to_user_id', p_user_id, 'team_id', r.team_id,
            'reason', p_reason, 'rule', p_rule) || COALESCE(p_item, '{}'::jsonb));
        RETURN QUERY SELECT r.id, r.name::text, r.phone::text, r.email::text, r.source::text, r.region::text,
            r.product::text, r.attributes::jsonb, r.team_id, r.stage::text, r.is_customer, r.locked,
            NULL::bigint;
    END LOOP;
    RETURN QUERY SELECT NULL::bigint, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text,
        NULL::jsonb, NULL::bigint, NULL::text, NULL::boolean, NULL::boolean,
        CASE WHEN jsonb_array_length(v_items) > 0
             THEN core_emit(p_tenant_id, 'lead_assigned', v_items, p_actor_id, p_now, p_plugins) END;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TAKE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS core_take(bigint, bigint[], bigint, bigint, timestamptz, text, text, "
                   "text, jsonb, bigint, jsonb, text[])")
