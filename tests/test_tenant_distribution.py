"""The schema can be distributed by tenant: tenant keys in the core's and every plugin's tables.

docs/operations.md ("Scaling out") says what this buys and what Citus would
still need. The check itself is ``pelago.testing.assert_tenant_distributable``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pelago.core import migrate
from pelago.core.db import Base, make_engine
from pelago.core.host import PluginHost
from pelago.core.models import DEAL_KINDS, Activity, Deal, Lead, Refund, Team, Tenant, Touch, User
from pelago.core.tenant_keys import problems, reference_tables
from pelago.testing import assert_tenant_distributable

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)

#: the tables with no tenant key, and why (each model says so; docs/operations.md lists them)
REFERENCE = {
    "core_tenant",  # the tenants themselves
    "core_user",  # operators have no tenant; read to authenticate, before the tenant is known
    "core_api_key",  # found by its prefix before the tenant is known
    "core_channel",  # a webhook finds its channel by the key in its URL
    "scheduling_feed_token",  # a feed URL carries only its token
    "core_console_session",  # found by its cookie's token before the tenant is known
}


def test_the_migrated_schema_can_be_distributed_by_tenant(engine: Engine) -> None:
    assert_tenant_distributable(engine)


def test_the_reference_tables_are_the_few_read_before_the_tenant_is_known(pelago_migration_host: PluginHost) -> None:
    declared = reference_tables()
    assert set(declared) == {t for t in REFERENCE if t in Base.metadata.tables}
    assert all(len(reason) > 20 for reason in declared.values())


def test_every_other_table_is_keyed_by_tenant_in_the_models(pelago_migration_host: PluginHost) -> None:
    for name, table in Base.metadata.tables.items():
        if name in REFERENCE:
            continue
        assert [c.name for c in table.primary_key.columns][0] == "tenant_id", name
        assert not table.c.tenant_id.nullable, name


def test_the_orm_identity_stays_the_id(engine: Engine) -> None:
    with Session(engine) as s:
        tenant = Tenant(slug=f"orm-{id(s)}", name="t", created_at=NOW)
        s.add(tenant)
        s.flush()
        team = Team(tenant_id=tenant.id, name="a", created_at=NOW)
        s.add(team)
        s.flush()
        assert s.get(Team, team.id) is team
        assert Team.__mapper__.primary_key == (Team.__table__.c.id,)
        assert [c.name for c in Team.__table__.primary_key.columns] == ["tenant_id", "id"]
        s.rollback()


def test_the_check_finds_a_table_without_its_tenant_key(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("primary and foreign keys are checked on PostgreSQL (SQLite keeps its own: see the docs)")
    # The probe keys are NOT VALID: the run's earlier tests left touches that they need not match.
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE core_touch DROP CONSTRAINT fk_core_touch_lead_id_core_lead"))
        conn.execute(text("ALTER TABLE core_touch ADD CONSTRAINT fk_core_touch_lead_id_core_lead "
                          "FOREIGN KEY (lead_id, tenant_id) REFERENCES core_lead (id, tenant_id) ON DELETE CASCADE NOT VALID"))
        conn.execute(text("CREATE UNIQUE INDEX ix_touch_probe ON core_touch (received_at, id)"))
        found = problems(conn, ("core_touch",))
        conn.rollback()
    # The columns line up by position: (lead_id, tenant_id) -> (id, tenant_id) does go through the tenant.
    assert found == ["core_touch: unique index ix_touch_probe ('received_at', 'id') lacks tenant_id"]
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE core_touch DROP CONSTRAINT fk_core_touch_lead_id_core_lead"))
        conn.execute(text("ALTER TABLE core_touch DROP CONSTRAINT pk_core_touch CASCADE"))
        conn.execute(text("ALTER TABLE core_touch ADD CONSTRAINT pk_core_touch PRIMARY KEY (id)"))
        conn.execute(text("ALTER TABLE core_touch ADD CONSTRAINT fk_core_touch_lead_id_core_lead "
                          "FOREIGN KEY (lead_id, lead_id) REFERENCES core_lead (tenant_id, id) NOT VALID"))
        found = problems(conn, ("core_touch",))
        conn.rollback()
    assert found == [
        "core_touch: primary key ('id',) lacks tenant_id",
        "core_touch: foreign key fk_core_touch_lead_id_core_lead ('lead_id', 'lead_id') onto core_lead "
        "does not go through tenant_id",
    ]


@pytest.mark.postgres
def test_a_row_cannot_point_at_another_tenants_row(engine: Engine) -> None:
    with Session(engine) as s:
        a, b = Tenant(slug=f"fk-a-{id(s)}", name="a", created_at=NOW), Tenant(slug=f"fk-b-{id(s)}", name="b",
                                                                                  created_at=NOW)
        s.add_all([a, b])
        s.flush()
        lead = Lead(tenant_id=b.id, name="x", phone="+8613800000001", created_at=NOW, updated_at=NOW,
                    stage_changed_at=NOW)
        s.add(lead)
        s.flush()
        with pytest.raises(IntegrityError, match="fk_core_activity_lead_id_core_lead"):
            with s.begin_nested():
                s.add(Activity(tenant_id=a.id, lead_id=lead.id, kind="note", occurred_at=NOW, created_at=NOW))
                s.flush()
        s.rollback()


# --- an existing database, with rows, upgraded --------------------------------------------------


def _before_tenant_keys(host: PluginHost, engine: Engine) -> dict[str, str]:
    """Each branch's revision just before its tenant-key revision (the heads this branch started from)."""
    script = ScriptDirectory.from_config(migrate.alembic_config(engine, host))
    before: dict[str, str] = {}
    for rev in script.walk_revisions():
        module = rev.module
        if getattr(module, "migrate_to_tenant_keys", None) is None or not hasattr(module, "TABLES"):
            continue
        branch = "core" if rev.revision == "0010" else rev.revision.rsplit("_", 1)[0]
        down = rev.down_revision
        assert isinstance(down, str)
        before[branch] = down
    return before


def _rows(engine: Engine) -> dict[str, Any]:
    """What the upgrade must keep: a few tables' rows, whole."""
    tables = ["core_team", "core_lead", "core_touch", "core_activity", "core_deal", "core_refund", "core_event",
              "core_event_delivery", "pool_pool", "pool_entry", "pool_member", "pool_rep_day", "lead_score_score"]
    with engine.connect() as conn:
        return {t: sorted(map(tuple, conn.execute(text(f"SELECT * FROM {t}")).all()), key=repr) for t in tables}


def test_an_existing_database_with_rows_upgrades_to_tenant_keys(db_url: str, pelago_migration_host: PluginHost) -> None:
    """From the heads before the tenant keys, with data in every kind of key, to the heads now."""
    from pelago.plugins.pool.models import Pool, PoolEntry, PoolMember, RepDay
    from pelago_lead_score.models import LeadScore

    host = pelago_migration_host
    with migrate.throwaway_database(db_url) as url:
        engine = make_engine(url)
        try:
            before = _before_tenant_keys(host, engine)
            assert {"core", "pool", "lead_score"} <= set(before)
            with engine.begin() as conn:
                cfg = migrate.alembic_config(engine, host, conn)
                command.upgrade(cfg, before["core"])
                for branch, rev in before.items():
                    if branch != "core":
                        command.upgrade(cfg, rev)
            with Session(engine) as s:
                tenants = [Tenant(slug=f"up-{n}", name=f"t{n}", created_at=NOW) for n in (1, 2)]
                s.add_all(tenants)
                s.flush()
                for t in tenants:
                    team = Team(tenant_id=t.id, name="sales", created_at=NOW)
                    s.add(team)
                    s.flush()
                    rep = User(tenant_id=t.id, email=f"rep{t.id}@x.test", role="rep", team_id=team.id,
                               created_at=NOW)
                    s.add(rep)
                    s.flush()
                    leads = [Lead(tenant_id=t.id, name=f"l{n}", phone=f"+86138000000{n:02d}", team_id=team.id,
                                  owner_id=rep.id if n % 2 else None, created_at=NOW, updated_at=NOW,
                                  stage_changed_at=NOW) for n in range(4)]
                    s.add_all(leads)
                    s.flush()
                    s.add_all([Touch(tenant_id=t.id, lead_id=lead.id, received_at=NOW) for lead in leads])
                    s.add_all([Activity(tenant_id=t.id, lead_id=lead.id, user_id=rep.id, kind="call",
                                        occurred_at=NOW, created_at=NOW) for lead in leads])
                    deal = Deal(tenant_id=t.id, lead_id=leads[1].id, owner_id=rep.id, team_id=team.id,
                                amount=Decimal("100.00"), currency="CNY", kind=DEAL_KINDS[0], won_at=NOW)
                    s.add(deal)
                    s.flush()
                    s.add(Refund(tenant_id=t.id, deal_id=deal.id, amount=Decimal("10.00"), reason="r",
                                 created_at=NOW))
                    pool = Pool(tenant_id=t.id, name="p", team_id=team.id, created_at=NOW, updated_at=NOW)
                    s.add(pool)
                    s.flush()
                    s.add(PoolMember(tenant_id=t.id, pool_id=pool.id, user_id=rep.id))
                    s.add_all([PoolEntry(tenant_id=t.id, lead_id=lead.id, pool_id=pool.id, entered_at=NOW,
                                         reason="released") for lead in leads[::2]])
                    s.add(RepDay(tenant_id=t.id, user_id=rep.id, day=NOW.date(), claims=2, views=3))
                    s.add_all([LeadScore(tenant_id=t.id, lead_id=lead.id, score=n, updated_at=NOW)
                               for n, lead in enumerate(leads)])
                    s.execute(text("INSERT INTO core_event (tenant_id, name, payload, created_at) "
                                   "VALUES (:t, 'lead_created', '{}', :now)"), {"t": t.id, "now": NOW})
                    s.execute(text("INSERT INTO core_event_delivery (tenant_id, event_id, plugin, state, attempts) "
                                   "SELECT tenant_id, id, 'pool', 'pending', 0 FROM core_event WHERE tenant_id = :t"),
                              {"t": t.id})
                s.commit()
                last_lead = s.scalar(select(func.max(Lead.id)))
            kept = _rows(engine)

            migrate.upgrade(engine, host)

            assert migrate.pending(engine, host) == []
            assert migrate.diff(engine, host) == []
            assert _rows(engine) == kept
            assert_tenant_distributable(engine)
            with Session(engine) as s:  # ids go on from the same sequence; the session finds rows by id
                tenant = s.scalars(select(Tenant).where(Tenant.slug == "up-1")).one()
                lead = Lead(tenant_id=tenant.id, name="new", phone="+8613900000000", created_at=NOW,
                            updated_at=NOW, stage_changed_at=NOW)
                s.add(lead)
                s.flush()
                assert lead.id > last_lead
                assert s.get(Lead, lead.id) is lead
                s.delete(s.scalars(select(Team).where(Team.tenant_id == tenant.id)).one())
                s.flush()  # SET NULL clears the team, never the tenant
                s.expire_all()
                old = s.scalars(select(Lead).where(Lead.tenant_id == tenant.id, Lead.name == "l0")).one()
                assert old.team_id is None and old.tenant_id == tenant.id
                assert s.get(Pool, s.scalars(select(Pool.id).where(Pool.tenant_id == tenant.id)).one()).team_id is None
                s.rollback()
            if engine.dialect.name == "postgresql":
                insp = inspect(engine)
                assert insp.get_pk_constraint("core_lead")["constrained_columns"] == ["tenant_id", "id"]
                assert insp.get_pk_constraint("pool_entry")["constrained_columns"] == ["tenant_id", "lead_id"]
        finally:
            engine.dispose()
