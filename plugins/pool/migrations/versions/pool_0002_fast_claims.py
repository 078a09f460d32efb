"""fast claims: a per-tenant pool config version, and the claim as one function call (PostgreSQL).

Claims cache a tenant's pools per process and check this number inside their
own statement instead of reading the pools each time. On PostgreSQL the
triggers raise it for every insert, update or delete of a pool or a pool
member, in the same transaction, to a new value of a sequence: sequences
are not rolled back, so a version seen in a transaction that rolled back is
never given to other pools later. SQLite reads the pools every time and needs
no triggers.

``pool_take()`` makes the writes of a claim (or a distribution) in one call:
see ``pelago.plugins.pool.taking``. A function, not a statement sent each
time, because PL/pgSQL keeps its plans for the life of the connection (a
prepared statement's plan is dropped by the driver on every rollback, and a
claim that loses a race rolls back), and ``plan_cache_mode`` can be set for
it alone.

Revision ID: pool_0002
Revises: pool_0001
Create Date: 2026-11-25 01:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'pool_0002'
down_revision: str | Sequence[str] | None = "pool_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = '0003'  # core_emit()

TABLES = ("pool_pool", "pool_member")
BUMP_FUNCTION = """
CREATE OR REPLACE FUNCTION pool_bump_config_version() RETURNS trigger AS $$
BEGIN
  INSERT INTO pool_config_version (tenant_id, version)
  VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.tenant_id ELSE NEW.tenant_id END, nextval('pool_config_version_seq'))
  ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version;
  IF TG_OP = 'UPDATE' AND OLD.tenant_id <> NEW.tenant_id THEN
    INSERT INTO pool_config_version (tenant_id, version) VALUES (OLD.tenant_id, nextval('pool_config_version_seq'))
    ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version;
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql
"""


TAKE_FUNCTION = """
CREATE OR REPLACE FUNCTION pool_take(
    p_tenant_id bigint, p_user_id bigint, p_team_id bigint, p_pool_id bigint, p_lead_ids bigint[],
    p_now timestamptz, p_day date, p_protect_before timestamptz, p_cooldown_before timestamptz,
    p_count boolean, p_daily_limit integer, p_reason text, p_note text, p_actor_id bigint,
    p_config_version bigint, p_explain boolean, p_event text, p_subscribers text[]
) RETURNS TABLE (
    kind text, id bigint, name text, phone text, email text, source text, region text, product text,
    attributes jsonb, team_id bigint, stage text, is_customer boolean, locked boolean,
    owner_id bigint, pool_id bigint, entered_at timestamptz, from_user_id bigint, released_at timestamptz,
    hidden_until timestamptz, claims_today integer, removed bigint, config_version bigint, event_id bigint
) LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_version bigint;
    v_taken bigint[] := '{}';
    v_items jsonb := '[]';
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

    -- 1. the writes, as one statement: owner, pool entry, the day's count, the ledger
    FOR r IN
        WITH taken AS (
            UPDATE core_lead AS l
            SET owner_id = p_user_id, team_id = COALESCE(p_team_id, l.team_id),
                assigned_at = p_now, updated_at = p_now, version = l.version + 1
            FROM pool_entry AS e
            WHERE l.tenant_id = p_tenant_id AND l.id = ANY(p_lead_ids) AND l.owner_id IS NULL
              AND e.lead_id = l.id AND e.tenant_id = p_tenant_id AND e.pool_id = p_pool_id
              AND (e.hidden_until IS NULL OR e.hidden_until <= p_now)
              AND (p_protect_before IS NULL OR e.entered_at < p_protect_before)
              AND (p_cooldown_before IS NULL OR e.from_user_id IS NULL OR e.from_user_id <> p_user_id
                   OR e.released_at IS NULL OR e.released_at < p_cooldown_before)
            RETURNING l.id, l.name, l.phone, l.email, l.source, l.region, l.product, l.attributes, l.team_id,
                      l.stage, l.is_customer, l.locked
        ), gone AS (
            DELETE FROM pool_entry AS e USING taken
            WHERE e.tenant_id = p_tenant_id AND e.lead_id = taken.id AND e.pool_id = p_pool_id
            RETURNING e.lead_id
        ), counted AS (
            INSERT INTO pool_rep_day AS d (tenant_id, user_id, day, claims, views)
            SELECT p_tenant_id, p_user_id, p_day, count(*), 0 FROM taken
            WHERE p_count HAVING count(*) > 0 AND (p_daily_limit IS NULL OR count(*) <= p_daily_limit)
            ON CONFLICT (user_id, day) DO UPDATE SET claims = d.claims + excluded.claims
            WHERE p_daily_limit IS NULL OR d.claims + excluded.claims <= p_daily_limit
            RETURNING d.claims
        ), ledger AS (
            INSERT INTO core_ownership_change (tenant_id, lead_id, from_user_id, to_user_id, from_team_id,
                                               to_team_id, reason, rule, note, detail, actor_id, at)
            SELECT p_tenant_id, taken.id, NULL, p_user_id, NULL, taken.team_id, p_reason, 'pool:' || p_pool_id,
                   p_note, jsonb_build_object('pool_id', p_pool_id), p_actor_id, p_now
            FROM taken
        )
        SELECT taken.*, (SELECT counted.claims FROM counted) AS claims, (SELECT count(*) FROM gone) AS removed
        FROM taken ORDER BY taken.id
    LOOP
        v_taken := v_taken || r.id;
        v_claims := r.claims;
        v_removed := r.removed;
        v_items := v_items || jsonb_build_object(
            'lead_id', r.id, 'from_user_id', NULL, 'to_user_id', p_user_id, 'team_id', r.team_id,
            'reason', p_reason, 'rule', 'pool:' || p_pool_id, 'pool_id', p_pool_id);
        RETURN QUERY SELECT 'taken'::text, r.id, r.name::text, r.phone::text, r.email::text, r.source::text,
            r.region::text, r.product::text, r.attributes::jsonb, r.team_id, r.stage::text, r.is_customer,
            r.locked, p_user_id, p_pool_id, NULL::timestamptz, NULL::bigint, NULL::timestamptz,
            NULL::timestamptz, NULL::integer, NULL::bigint, NULL::bigint, NULL::bigint;
    END LOOP;

    -- 2. the event, through the core's outbox function
    IF cardinality(v_taken) > 0 AND v_removed = cardinality(v_taken) AND p_event IS NOT NULL THEN
        v_event := core_emit(p_tenant_id, p_event, v_items, p_actor_id, p_now, p_subscribers);
    END IF;

    -- 3. the leads not taken, read again (a new snapshot: a rival's claim that made us wait is visible)
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


def upgrade() -> None:
    op.create_table('pool_config_version',
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('version', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_pool_config_version_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_pool_config_version'))
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE pool_config_version_seq")
        op.execute(BUMP_FUNCTION)
        op.execute(TAKE_FUNCTION)
        for table in TABLES:
            op.execute(f"CREATE TRIGGER {table}_config_version AFTER INSERT OR UPDATE OR DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION pool_bump_config_version()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS pool_take(bigint, bigint, bigint, bigint, bigint[], timestamptz, date, "
                   "timestamptz, timestamptz, boolean, integer, text, text, bigint, bigint, boolean, text, text[])")
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_config_version ON {table}")
        op.execute("DROP FUNCTION IF EXISTS pool_bump_config_version()")
        op.execute("DROP SEQUENCE IF EXISTS pool_config_version_seq")
    op.drop_table('pool_config_version')
