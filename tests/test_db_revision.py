"""``pelago db revision --plugin NAME``: a plugin's first and later revisions, whatever else is installed.

The plugins here are real packages written into ``tmp_path``: one handed to
the host as an extra spec (in-process), one installed with an entry point and
driven through the ``pelago`` command in a subprocess (its models must not
enter this process's metadata). Other plugins with migrations are installed
beside them (pool, lead_score, …), some deployed and some not; the revisions
are then applied to a fresh database of the run's kind (SQLite or PostgreSQL).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from pelago.core import migrate
from pelago.core.db import make_engine
from pelago.core.errors import PelagoError
from pelago.core.host import PluginHost
from pelago.core.spec import PluginSpec

PELAGO = str(Path(sys.executable).parent / "pelago")

NOTE_TABLE = '''
    op.create_table(
        "revtest_note",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  sa.ForeignKey("core_tenant.id", ondelete="CASCADE"), nullable=False),
    )
'''
NOTE_BODY = '''
    with op.batch_alter_table("revtest_note") as batch_op:
        batch_op.add_column(sa.Column("body", sa.String(200), nullable=False, server_default=""))
'''


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"rev_{uuid.uuid4().hex[:8]}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fill(path: Path, body: str) -> None:
    """Do what the author does next: write the revision's ``upgrade()``."""
    source = path.read_text()
    assert "def upgrade() -> None:\n    pass\n" in source
    path.write_text(source.replace("def upgrade() -> None:\n    pass\n", "def upgrade() -> None:" + body, 1))


def _core_revisions() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrate.HERE))
    return ScriptDirectory.from_config(cfg)


@pytest.fixture
def fresh_url(db_url):
    """An empty database of the run's kind (SQLite file, or a new database on the PostgreSQL server)."""
    with migrate.throwaway_database(db_url if db_url.startswith("postgresql") else None) as url:
        yield url


@pytest.fixture
def revtest(tmp_path) -> PluginSpec:
    """A new plugin ``revtest`` with an empty ``migrations/`` folder and no revisions yet."""
    (tmp_path / "revtest_pkg" / "migrations").mkdir(parents=True)
    return PluginSpec(name="revtest", title="Revision test", migrations=tmp_path / "revtest_pkg" / "migrations")


def test_first_and_later_revisions_with_other_plugins_installed_then_applied(revtest, fresh_url):
    # pool deployed beside it; lead_score, scheduling, … installed but not deployed.
    host = PluginHost(("pool", "revtest"), strict=True, extra=[revtest])
    installed = {*host.installed}
    assert {"pool", "lead_score"} <= installed
    versions = Path(revtest.migrations) / "versions"  # type: ignore[arg-type]

    first = migrate.revision(host, "revtest", "Notes table")
    assert first.path == versions / "revtest_0001_notes_table.py"
    assert (versions / "__init__.py").exists() and (versions.parent / "__init__.py").exists()
    module = _load(first.path)
    core = _core_revisions()
    core_head = core.get_revision("core@head")
    assert core_head is not None and core_head.nextrev == frozenset()  # the newest core revision
    assert (module.revision, module.down_revision, module.branch_labels, module.depends_on) == (
        "revtest_0001", None, ("revtest",), core_head.revision,
    )
    assert first.first and first.depends_on == core_head.revision
    assert "pelago.core" not in first.path.read_text()  # a plugin's revision imports only pelago.plugin
    _fill(first.path, NOTE_TABLE)

    second = migrate.revision(host, "revtest", "note body")
    assert second.path == versions / "revtest_0002_note_body.py"
    module = _load(second.path)
    assert (module.revision, module.down_revision, module.branch_labels, module.depends_on) == (
        "revtest_0002", "revtest_0001", None, None,
    )
    assert not second.first
    _fill(second.path, NOTE_BODY)

    engine = make_engine(fresh_url)
    try:
        migrate.upgrade(engine, host)
        assert migrate.pending(engine, host) == []
        tables = set(inspect(engine).get_table_names())
        assert {"core_lead", "pool_pool", "revtest_note"} <= tables
        assert "lead_score_score" not in tables  # installed, not deployed: its branch is left alone
        assert {c["name"] for c in inspect(engine).get_columns("revtest_note")} == {"id", "tenant_id", "body"}
        with engine.connect() as conn:
            applied = set(conn.scalars(text("SELECT version_num FROM alembic_version")))
        assert "revtest_0002" in applied

        # Deploying lead_score later, then a third revision: still found, numbered, applied.
        wider = PluginHost(("lead_score", "pool", "revtest"), strict=True, extra=[revtest])
        third = migrate.revision(wider, "revtest", "index")
        assert third.revision == "revtest_0003" and third.down_revision == "revtest_0002"
        _fill(third.path, '\n    op.create_index("ix_revtest_note_tenant", "revtest_note", ["tenant_id"])\n')
        migrate.upgrade(engine, wider)
        assert migrate.pending(engine, wider) == []
        assert "lead_score_score" in set(inspect(engine).get_table_names())
        assert "ix_revtest_note_tenant" in {i["name"] for i in inspect(engine).get_indexes("revtest_note")}
    finally:
        engine.dispose()


def test_refuses_a_plugin_without_migrations_folder():
    spec = PluginSpec(name="nomig", title="No migrations")
    host = PluginHost(("nomig",), extra=[spec])
    with pytest.raises(PelagoError, match="declares no migrations folder"):
        migrate.revision(host, "nomig", "x")


# --- through the command, with an installed plugin and --autogenerate ---------------------------


MODELS = '''
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from pelago.plugin import Base, BigId, TenantScoped, tenant_key


class Note(TenantScoped, Base):
    __tablename__ = "revauto_note"
    __table_args__ = (
        tenant_key(["lead_id"], "core_lead", ondelete="CASCADE"),
        Index("ix_revauto_note_lead", "tenant_id", "lead_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(BigId)
    body: Mapped[str] = mapped_column(String(500))
    written_at: Mapped[datetime]
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
'''
MORE_MODELS = '''

class Tag(TenantScoped, Base):
    __tablename__ = "revauto_tag"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
'''


@pytest.fixture
def installed_revauto(tmp_path):
    """A plugin ``revauto`` installed in ``tmp_path/site`` (a package and its entry point)."""
    site = tmp_path / "site"
    package = site / "pelago_revauto"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent('''
        from pathlib import Path

        from pelago.plugin import PluginSpec

        from . import models  # noqa: F401 - registers the plugin's tables

        plugin = PluginSpec(name="revauto", title="Autogenerate test", migrations=Path(__file__).parent / "migrations")
    '''))
    (package / "models.py").write_text(MODELS)
    info = site / "pelago_revauto-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pelago-revauto\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[pelago.plugins]\nrevauto = pelago_revauto:plugin\n")
    return site


def _pelago(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PELAGO_PLUGINS", "REDIS_URL")}
    environ.update(PYTHONPATH=str(site), **env)
    return subprocess.run([PELAGO, *args], capture_output=True, text=True, env=environ, cwd=site, timeout=120)


def test_autogenerate_through_the_command_with_other_plugins_installed(installed_revauto, db_url, fresh_url):
    site = installed_revauto
    versions = site / "pelago_revauto" / "migrations" / "versions"
    # The command's throwaway database is on the run's server: PostgreSQL in the PostgreSQL pass.
    server = {"DATABASE_URL": db_url} if db_url.startswith("postgresql") else {}

    done = _pelago(site, "db", "revision", "--plugin", "revauto", "-m", "initial", "--autogenerate",
                   PELAGO_PLUGINS="revauto", **server)
    assert done.returncode == 0, done.stderr
    assert "revauto_0001: first revision of branch 'revauto'" in done.stdout
    first = versions / "revauto_0001_initial.py"
    source = first.read_text()
    assert "op.create_table('revauto_note'" in source
    assert "pelago.plugin.UtcDateTime(timezone=True)" in source and "pelago.core" not in source
    assert "create_index('ix_revauto_note_lead'" in source
    # Keyed as the models say; SQLite makes it id INTEGER PRIMARY KEY + UNIQUE (tenant_id, id) (checked below).
    assert "sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_revauto_note'))" in source
    assert "sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True" in source
    assert "pool_" not in source and "lead_score_" not in source  # other plugins' tables are not its own
    module = _load(first)
    assert module.branch_labels == ("revauto",) and module.down_revision is None
    assert module.depends_on == migrate.core_head()

    # A new model and a later revision, with only pool deployed: revauto is installed, not deployed.
    with (site / "pelago_revauto" / "models.py").open("a") as fh:
        fh.write(MORE_MODELS)
    done = _pelago(site, "db", "revision", "--plugin", "revauto", "-m", "tags", "--autogenerate",
                   PELAGO_PLUGINS="pool", **server)
    assert done.returncode == 0, done.stderr
    second = versions / "revauto_0002_tags.py"
    source = second.read_text()
    assert "op.create_table('revauto_tag'" in source and "revauto_note" not in source
    assert "uq_" not in source and "drop_" not in source.split("def downgrade")[0]  # SQLite's keys are as expected
    assert "create_index('ix_revauto_tag_id', ['id']" in source  # the ORM's lookups by id, on PostgreSQL
    assert _load(second).down_revision == "revauto_0001"

    done = _pelago(site, "db", "upgrade", DATABASE_URL=fresh_url, PELAGO_PLUGINS="pool,revauto")
    assert done.returncode == 0, done.stderr
    engine = make_engine(fresh_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"revauto_note", "revauto_tag", "pool_pool"} <= tables and "lead_score_score" not in tables
        _assert_tenant_keyed(engine, ("revauto_note", "revauto_tag"))
        _assert_ids_given_by_the_database(engine)
    finally:
        engine.dispose()

    # Nothing changed since: an autogenerated revision is empty.
    done = _pelago(site, "db", "revision", "--plugin", "revauto", "-m", "nothing", "--autogenerate",
                   PELAGO_PLUGINS="revauto", **server)
    assert done.returncode == 0, done.stderr
    assert "op." not in (versions / "revauto_0003_nothing.py").read_text().split("def upgrade")[1]


def _assert_tenant_keyed(engine, tables: tuple[str, ...]) -> None:
    """PostgreSQL: key (tenant_id, id) and an index on id; SQLite: key id and a UNIQUE (tenant_id, id)."""
    insp = inspect(engine)
    for table in tables:
        key = insp.get_pk_constraint(table)["constrained_columns"]
        indexes = {tuple(i["column_names"]): bool(i["unique"]) for i in insp.get_indexes(table)}
        indexes.update((tuple(u["column_names"]), True) for u in insp.get_unique_constraints(table))
        if engine.dialect.name == "sqlite":
            assert key == ["id"] and indexes[("tenant_id", "id")] is True, (table, key, indexes)
        else:
            assert key == ["tenant_id", "id"] and indexes[("id",)] is False, (table, key, indexes)


def _assert_ids_given_by_the_database(engine) -> None:
    """Rows inserted without an id get one from the database, in both autogenerated tables."""
    at = "'2026-01-05 10:00:00+00:00'"
    with engine.begin() as conn:
        tenant = conn.scalar(text(
            "INSERT INTO core_tenant (slug, name, timezone, default_region, currency, created_at) "
            f"VALUES ('acme', 'Acme', 'UTC', 'CN', 'CNY', {at}) RETURNING id"))
        lead = conn.scalar(text(
            "INSERT INTO core_lead (tenant_id, name, email, stage, is_customer, locked, attributes, created_at, updated_at,"
            f" stage_changed_at, version) VALUES (:t, 'Li', 'li@example.com', 'new', false, false, '{{}}', {at}, {at}, {at}, 1)"
            " RETURNING id"), {"t": tenant})
        notes = [conn.scalar(text(
            f"INSERT INTO revauto_note (tenant_id, lead_id, body, written_at, extra) VALUES (:t, :l, 'hi', {at}, '{{}}')"
            " RETURNING id"), {"t": tenant, "l": lead}) for _ in range(2)]
        tags = [conn.scalar(text("INSERT INTO revauto_tag (tenant_id, name) VALUES (:t, 'vip') RETURNING id"),
                            {"t": tenant}) for _ in range(2)]
    assert None not in notes and len(set(notes)) == 2, notes
    assert None not in tags and len(set(tags)) == 2, tags


def test_the_command_names_what_is_wrong(installed_revauto):
    done = _pelago(installed_revauto, "db", "revision", "--plugin", "nosuch", "-m", "x")
    assert done.returncode != 0
    assert "no plugin called 'nosuch' is installed" in done.stderr and "revauto" in done.stderr
    assert "Traceback" not in done.stderr
    # a plugin that does not import: its error, not "not installed"
    (installed_revauto / "pelago_revauto" / "models.py").write_text("import no_such_module\n")
    for deployed in ("revauto", "pool"):
        done = _pelago(installed_revauto, "db", "revision", "--plugin", "revauto", "-m", "x", PELAGO_PLUGINS=deployed)
        assert done.returncode != 0
        assert "'revauto' is installed but failed to load" in done.stderr and "no_such_module" in done.stderr
        assert "Traceback" not in done.stderr
