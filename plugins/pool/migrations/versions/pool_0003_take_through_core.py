"""claims through the core: pool_take() calls core_take() for the lead rows, ledger and event (PostgreSQL)

``pool_take()`` keeps its job and its result rows (one round trip per claim;
see ``taking.py`` of the pool): it selects the entries the pool's terms
allow, hands them to the core's ``core_take()`` (migration ``0004``), which
alone writes ``core_lead`` and ``core_ownership_change`` and emits
``lead_assigned``, then removes the entries (the same terms; the count is
checked by the caller: a lead moved meanwhile is a 409), counts the day's
claims and reads the leads not taken. Its ``p_event`` parameter is gone: the
core names its event.

Revision ID: pool_0003
Revises: pool_0002
Create Date: 2026-12-04 20:00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = 'pool_0003'
down_revision: str | Sequence[str] | None = 'pool_0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = '0004'  # core_take()

OLD_SIGNATURE = ("pool_take(bigint, bigint, bigint, bigint, bigint[], timestamptz, date, timestamptz, timestamptz, "
                 "boolean, integer, text, text, bigint, bigint, boolean, text, text[])")
NEW_SIGNATURE = ("pool_take(bigint, bigint, bigint, bigint, bigint[], timestamptz, date, timestamptz, timestamptz, "
                 "boolean, integer, text, text, bigint, bigint, boolean, text[])")

TAKE_FUNCTION = """
CREATE OR REPLACE FUNCTION pool_take(
    p_tenant_id bigint, p_user_id bigint, p_team_id bigint, p_pool_id bigint, p_lead_ids bigint[],
    p_now timestamptz, p_day date, p_protect_before timestamptz, p_cooldown_before timestamptz,
    p_count boolean, p_daily_limit integer, p_reason text, p_note text, p_actor_id bigint,
    p_config_version bigint, p_explain boolean, p_subscribers text[]
) RETURNS TABLE (
    kind text, id bigint, name text, phone text, email text, source text, region text, product text,
    attributes jsonb, team_id bigint, stage text, is_customer boolean, locked boolean,
    owner_id bigint, pool_id bigint, entered_at timestamptz, from_user_id bigint, released_at timestamptz,
    hidden_until timestamptz, claims_today integer, removed bigint, config_version bigint, event_id bigint
) LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_version bigint;
    v_eligible bigint[];
    v_taken bigint[] := '{}';
    v_claims integer;
    v_removed bigint := 0;
    v_event bigint;
    r record;
BEGIN
    SELECT v.version INTO v_version FROM pool_config_version AS v WHERE v.tenant_id = p_tenant_id;
    v_version := COALESCE(v_version, 0);
    IF p_config_version IS NOT NULL AND p_config_version <> v_version THEN
        -- the caller's cached pools are out of date: nothing is written, it reloads and calls again
        RETURN QUERY SELECT 'summary'::text, NULL::bigint, NULL::text, NULL::text, NULL::text, NULL::text,
            NULL::text, NULL::text, NULL::jsonb, NULL::bigint, NULL::text, NULL::boolean, NULL::boolean,
            NULL::bigint, NULL::bigint, NULL::timestamptz, NULL::bigint, NULL::timestamptz, NULL::timestamptz,
            NULL::integer, NULL::bigint, v_version, NULL::bigint;
        RETURN;
    END IF;

    -- 1. the entries of that pool the terms allow
    SELECT array_agg(e.lead_id ORDER BY e.lead_id) INTO v_eligible
    FROM pool_entry AS e
    WHERE e.tenant_id = p_tenant_id AND e.lead_id = ANY(p_lead_ids) AND e.pool_id = p_pool_id
      AND (e.hidden_until IS NULL OR e.hidden_until <= p_now)
      AND (p_protect_before IS NULL OR e.entered_at < p_protect_before)
      AND (p_cooldown_before IS NULL OR e.from_user_id IS NULL OR e.from_user_id <> p_user_id
           OR e.released_at IS NULL OR e.released_at < p_cooldown_before);

    IF v_eligible IS NOT NULL THEN
        -- 2. the core takes those still unowned: lead rows, ledger, one lead_assigned event
        FOR r IN
            SELECT * FROM core_take(p_tenant_id, v_eligible, p_user_id, p_team_id, p_now, p_reason,
                                    'pool:' || p_pool_id, p_note, jsonb_build_object('pool_id', p_pool_id),
                                    p_actor_id, jsonb_build_object('pool_id', p_pool_id), p_subscribers)
        LOOP
            IF r.id IS NULL THEN
                v_event := r.event_id;
            ELSE
                v_taken := v_taken || r.id;
                RETURN QUERY SELECT 'taken'::text, r.id, r.name, r.phone, r.email, r.source, r.region, r.product,
                    r.attributes, r.team_id, r.stage, r.is_customer, r.locked, p_user_id, p_pool_id,
                    NULL::timestamptz, NULL::bigint, NULL::timestamptz, NULL::timestamptz, NULL::integer,
                    NULL::bigint, NULL::bigint, NULL::bigint;
            END IF;
        END LOOP;
    END IF;

    IF cardinality(v_taken) > 0 THEN
        -- 3. the entries leave the pool (the same terms: the caller checks the count, 409 if short)
        DELETE FROM pool_entry AS e
        WHERE e.tenant_id = p_tenant_id AND e.lead_id = ANY(v_taken) AND e.pool_id = p_pool_id
          AND (e.hidden_until IS NULL OR e.hidden_until <= p_now)
          AND (p_protect_before IS NULL OR e.entered_at < p_protect_before)
          AND (p_cooldown_before IS NULL OR e.from_user_id IS NULL OR e.from_user_id <> p_user_id
               OR e.released_at IS NULL OR e.released_at < p_cooldown_before);
        GET DIAGNOSTICS v_removed = ROW_COUNT;
        -- 4. the day's count, never past the limit (NULL: it would pass it, the caller rolls back)
        IF p_count AND (p_daily_limit IS NULL OR cardinality(v_taken) <= p_daily_limit) THEN
            INSERT INTO pool_rep_day AS d (tenant_id, user_id, day, claims, views)
            VALUES (p_tenant_id, p_user_id, p_day, cardinality(v_taken), 0)
            ON CONFLICT (user_id, day) DO UPDATE SET claims = d.claims + excluded.claims
            WHERE p_daily_limit IS NULL OR d.claims + excluded.claims <= p_daily_limit
            RETURNING d.claims INTO v_claims;
        END IF;
    END IF;

    -- 5. the leads not taken, read again (a new snapshot: a rival's claim that made us wait is visible)
    IF p_explain AND cardinality(v_taken) < cardinality(p_lead_ids) THEN
        RETURN QUERY SELECT 'other'::text, x.lead_id, NULL::text, NULL::text, NULL::text, NULL::text,
            NULL::text, NULL::text, NULL::jsonb, NULL::bigint, NULL::text, NULL::boolean, NULL::boolean,
            l.owner_id, e.pool_id, e.entered_at, e.from_user_id, e.released_at, e.hidden_until,
            NULL::integer, NULL::bigint, NULL::bigint, NULL::bigint
        FROM unnest(p_lead_ids) AS x(lead_id)
        LEFT JOIN core_lead AS l ON l.id = x.lead_id AND l.tenant_id = p_tenant_id
        LEFT JOIN pool_entry AS e ON e.lead_id = x.lead_id AND e.tenant_id = p_tenant_id
        WHERE x.lead_id <> ALL(v_taken);
    END IF;

    RETURN QUERY SELECT 'summary'::text, NULL::bigint, NULL::text, NULL::text, NULL::text, NULL::text,
        NULL::text, NULL::text, NULL::jsonb, NULL::bigint, NULL::text, NULL::boolean, NULL::boolean,
        NULL::bigint, NULL::bigint, NULL::timestamptz, NULL::bigint, NULL::timestamptz, NULL::timestamptz,
        v_claims, v_removed, v_version, v_event;
END $$
"""


def _pool_0002_take_function() -> str:
    """pool_0002's ``pool_take`` (it wrote the lead rows, the ledger and the event itself)."""
    path = Path(__file__).with_name("pool_0002_fast_claims.py")
    spec = importlib.util.spec_from_file_location("pool_0002_fast_claims", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.TAKE_FUNCTION)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {OLD_SIGNATURE}")
        op.execute(TAKE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {NEW_SIGNATURE}")
        op.execute(_pool_0002_take_function())
