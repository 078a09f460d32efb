"""The schema comes from the migrations, and they agree with the models."""

from __future__ import annotations

from sqlalchemy import inspect

from pelago.core import migrate
from pelago.core.db import Base
from pelago.testing import assert_models_match_migrations


def test_models_and_migrations_agree(engine, pelago_migration_host):
    assert_models_match_migrations(engine, pelago_migration_host)


def test_nothing_is_pending(engine, pelago_migration_host):
    assert migrate.pending(engine, pelago_migration_host) == []


def test_every_core_table_exists_and_every_tenant_table_has_tenant_id(engine):
    tables = set(inspect(engine).get_table_names())
    core = {t.name for t in Base.metadata.sorted_tables if t.name.startswith("core_")}
    assert core <= tables
    for table in Base.metadata.sorted_tables:
        if table.name in ("core_tenant",):
            continue
        if table.name.startswith("core_") or "_" in table.name:
            assert "tenant_id" in table.c, f"{table.name} has no tenant_id"


def test_upgrade_is_idempotent_and_a_fresh_database_migrates(tmp_path, pelago_migration_host):
    from pelago.core.db import make_engine

    fresh = make_engine(f"sqlite:///{tmp_path}/fresh.db")
    migrate.upgrade(fresh, pelago_migration_host)
    migrate.upgrade(fresh, pelago_migration_host)
    assert migrate.diff(fresh, pelago_migration_host) == []
    fresh.dispose()


def test_plugin_tables_are_prefixed_with_their_plugin_name(pelago_migration_host):
    names = ("core", *pelago_migration_host.specs)
    for table in Base.metadata.sorted_tables:
        assert table.name.split("_")[0] in names or any(table.name.startswith(f"{n}_") for n in names), table.name
