"""Alembic glue: the core branch plus one labelled branch per deployed plugin.

A plugin's first revision sets ``branch_labels = ("<plugin>",)`` and
``depends_on`` the core revision it needs; ``pelago db upgrade`` upgrades every
head, so deploying a plugin creates its tables and nothing else changes.
:func:`revision` (``pelago db revision --plugin NAME``) writes a plugin's
revisions in that shape, whatever else is installed or deployed.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Text, create_engine, make_url, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.pool import NullPool

from .errors import PelagoError
from .host import PluginHost
from .spec import PluginSpec

HERE = Path(__file__).parent / "migrations"


def _installed_specs(host: PluginHost, failures: dict[str, str] | None = None) -> dict[str, PluginSpec]:
    """The host's plugins, then every other installed one that loads (deployed or not).

    ``failures`` collects the load errors of the others, by plugin name.
    """
    from importlib.metadata import entry_points

    from .host import ENTRY_POINT_GROUP

    specs = dict(host.specs)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in specs:
            continue
        try:
            spec = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin is reported elsewhere
            if failures is not None:
                failures[ep.name] = f"{type(exc).__name__}: {exc}"
            continue
        if isinstance(spec, PluginSpec):
            specs[ep.name] = spec
    return specs


def _installed_migrations(host: PluginHost) -> list[Path]:
    """Migration folders of deployed plugins and of installed but undeployed ones.

    An undeployed plugin's revisions may already be in the database (it was
    deployed once; switching off never deletes data): Alembic must be able to
    read them even though nothing upgrades that branch any more.
    """
    return [_versions(Path(s.migrations)) for s in _installed_specs(host).values() if s.migrations is not None]


def _versions(folder: Path) -> Path:
    """A plugin's ``migrations/`` holds its revisions in ``versions/``, as the core's does."""
    return folder / "versions" if (folder / "versions").is_dir() else folder


def alembic_config(engine: Engine, host: PluginHost, connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    locations = [str(HERE / "versions")]
    locations += [str(folder) for folder in _installed_migrations(host)]
    cfg.set_main_option("version_locations", " ".join(locations))
    cfg.set_main_option("path_separator", "space")
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["table_prefixes"] = ("core_", *(f"{name}_" for name in host.specs))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def targets(host: PluginHost) -> list[str]:
    """``core@head`` and ``<plugin>@head`` for each deployed plugin with migrations."""
    return ["core@head", *(f"{name}@head" for name, spec in host.specs.items() if spec.migrations is not None)]


def upgrade(engine: Engine, host: PluginHost) -> None:
    """Bring the core and every deployed plugin's tables up to date.

    Branches of plugins that are installed but not deployed are left as they
    are: deploying a plugin later creates its tables then.
    """
    with engine.begin() as conn:
        cfg = alembic_config(engine, host, conn)
        for target in targets(host):
            command.upgrade(cfg, target)


def pending(engine: Engine, host: PluginHost) -> list[str]:
    """Heads not yet applied (empty when the database is current)."""
    return SchemaCheck(engine, host).pending()


class SchemaCheck:
    """Whether the database is at the deployed heads (core and every deployed plugin's branch).

    The revision scripts are read once, on the first call; each call after
    that reads the database's current heads (one query) and walks the
    scripts only when they are not simply the deployed heads. For
    ``/readyz``, asked every few seconds.
    """

    def __init__(self, engine: Engine, host: PluginHost) -> None:
        self.engine, self.host = engine, host
        self._script: ScriptDirectory | None = None
        self._heads: dict[str, str] = {}

    def pending(self) -> list[str]:
        """The revision ids of the deployed heads not yet applied; empty when the database is current."""
        if self._script is None:
            script = ScriptDirectory.from_config(alembic_config(self.engine, self.host))
            self._heads = {script.get_revision(t).revision: t for t in targets(self.host)}  # type: ignore[union-attr]
            self._script = script
        with self.engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
        if set(self._heads) <= current:
            return []
        applied: set[str] = set()
        for rev in current:
            applied.update(r.revision for r in self._script.iterate_revisions(rev, "base"))
        return sorted(self._heads.keys() - applied)

    def describe(self, revisions: list[str]) -> list[str]:
        """``<branch>@head (<revision>)`` for each revision :meth:`pending` returned."""
        return [f"{self._heads[r]} ({r})" for r in revisions]


def diff(engine: Engine, host: PluginHost) -> list[Any]:
    """Differences between the models and the migrated database (should be none)."""
    from alembic.autogenerate import compare_metadata

    from .db import Base

    cfg = alembic_config(engine, host)
    prefixes = cfg.attributes["table_prefixes"]

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table":
            return bool(name) and name.startswith(prefixes)  # type: ignore[union-attr]
        table = getattr(obj, "table", None)
        return table is None or table.name.startswith(prefixes)

    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"include_object": include, "compare_type": True}
        )
        differences = list(compare_metadata(ctx, Base.metadata))
    if engine.dialect.name == "sqlite":
        differences = _sqlite_tenant_keys(differences)
    return differences


def _sqlite_tenant_keys(differences: list[Any]) -> list[Any]:
    """Leave out what SQLite keeps otherwise on purpose (``pelago.core.tenant_keys``).

    A key through the tenant the database holds on its own columns (made
    before revision 0010, or a ``SET NULL`` one), and the UNIQUE
    ``(tenant_id, <key>)`` that stands beside SQLite's ``INTEGER PRIMARY
    KEY`` for a table keyed ``(tenant_id, <key>)`` in the models; and the
    plain index on the ORM identity, which is SQLite's key itself.
    """
    from sqlalchemy import ForeignKeyConstraint, Index, UniqueConstraint

    def shape(fk: ForeignKeyConstraint) -> tuple[str, tuple[str, ...], str]:
        local = tuple(c for c in fk.column_keys if c != "tenant_id")
        return fk.parent.name, local, fk.referred_table.name  # type: ignore[attr-defined]

    def tenant_fk(fk: Any) -> bool:
        return isinstance(fk, ForeignKeyConstraint) and fk.column_keys[:1] == ["tenant_id"] and len(fk.column_keys) > 1

    added = {shape(d[1]) for d in differences if isinstance(d, tuple) and d[0] == "add_fk" and tenant_fk(d[1])}
    removed = {shape(d[1]) for d in differences if isinstance(d, tuple) and d[0] == "remove_fk"}
    from .db import Base, identity_index

    def stand_in(obj: Any) -> bool:
        if not isinstance(obj, (Index, UniqueConstraint)) or obj.table is None:
            return False
        model = Base.metadata.tables.get(obj.table.name)
        if model is None:
            return False
        key = [c.name for c in model.primary_key.columns]
        return key[:1] == ["tenant_id"] and [c.name for c in obj.columns] == key

    def identity_index_of(obj: Any) -> bool:
        if not isinstance(obj, Index) or obj.table is None:
            return False
        model = Base.metadata.tables.get(obj.table.name)
        identity = model.info.get("identity") if model is not None else None
        return identity is not None and obj.name == identity_index(obj.table.name, identity)

    kept = []
    for d in differences:
        if isinstance(d, tuple) and d[0] in ("add_fk", "remove_fk") and shape(d[1]) in added & removed:
            continue
        if isinstance(d, tuple) and d[0] in ("remove_index", "remove_constraint") and stand_in(d[1]):
            continue
        if isinstance(d, tuple) and d[0] == "add_index" and identity_index_of(d[1]):
            continue
        kept.append(d)
    return kept


# --- writing a plugin's revisions --------------------------------------------------------


@dataclass(frozen=True)
class NewRevision:
    """What :func:`revision` wrote."""

    path: Path
    revision: str
    down_revision: str | None
    depends_on: str | None

    @property
    def first(self) -> bool:
        return self.down_revision is None


def core_head() -> str:
    """The core's newest revision: what a plugin's first revision depends on."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    head = ScriptDirectory.from_config(cfg).get_revision("core@head")
    assert head is not None
    return head.revision


def revision(
    host: PluginHost,
    plugin: str,
    message: str,
    *,
    autogenerate: bool = False,
    against: str | None = None,
) -> NewRevision:
    """Write the next revision of ``plugin``'s own Alembic branch into its ``migrations/versions/``.

    The first one (the folder has none yet) starts the branch: no
    ``down_revision``, ``branch_labels = ("<plugin>",)`` and ``depends_on``
    the core's current head. A later one follows ``<plugin>@head``. Ids are
    ``<plugin>_0001``, ``<plugin>_0002`` …, files ``<id>_<slug of message>.py``.

    ``plugin`` may be deployed (in ``host``) or only installed; every other
    installed plugin's revisions are read too, deployed or not, so nothing
    else needs to be set up. With ``autogenerate`` the models are compared
    with a throwaway database (see :func:`throwaway_database`; ``against``
    picks its server, default a temporary SQLite file) upgraded to every
    installed head, limited to the plugin's own tables (``<plugin>_*``), and
    rendered in batch mode so the operations run on SQLite and PostgreSQL.
    """
    failures: dict[str, str] = {}
    specs = _installed_specs(host, failures)
    spec = specs.get(plugin)
    if spec is None and plugin in failures:
        raise PelagoError(f"plugin {plugin!r} is installed but failed to load: {failures[plugin]}")
    if spec is None:
        raise PelagoError(
            f"no plugin called {plugin!r} is installed (installed: {', '.join(sorted(specs)) or 'none'})"
        )
    if spec.migrations is None:
        raise PelagoError(
            f"plugin {plugin!r} declares no migrations folder: set "
            "migrations=Path(__file__).parent / \"migrations\" on its PluginSpec"
        )
    folder = Path(spec.migrations)
    versions = _versions(folder)
    if versions == folder and not any(p.name != "__init__.py" for p in folder.glob("*.py")):
        # A new plugin: its revisions go to migrations/versions/, a package like the core's.
        versions = folder / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        for package in (folder, versions):
            (package / "__init__.py").touch()

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    locations = [HERE / "versions", *(_installed_migrations(host))]
    if versions.resolve() not in {p.resolve() for p in locations}:
        locations.append(versions)
    cfg.set_main_option("version_locations", " ".join(str(p) for p in locations))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["plugin"] = plugin
    script = ScriptDirectory.from_config(cfg)

    own = [r for r in script.walk_revisions() if r.path and Path(r.path).parent.resolve() == versions.resolve()]
    numbers = [int(m.group(1)) for r in own if (m := re.fullmatch(rf"{re.escape(plugin)}_(\d+)", r.revision))]
    rev_id = f"{plugin}_{max(numbers, default=len(own)) + 1:04d}"
    taken = {r.revision for r in script.walk_revisions()}
    while rev_id in taken:  # ids not in <plugin>_NNNN shape: skip past any collision
        rev_id = f"{plugin}_{int(rev_id.rsplit('_', 1)[1]) + 1:04d}"
    if own and not any(plugin in r.branch_labels for r in own):
        raise PelagoError(
            f"the revisions in {versions} carry no branch label {plugin!r}: its first revision must set "
            f"branch_labels = ({plugin!r},)"
        )
    kwargs: dict[str, Any] = {
        "message": message,
        "autogenerate": autogenerate,
        "version_path": str(versions),
        "rev_id": rev_id,
    }
    if own:
        kwargs["head"] = f"{plugin}@head"
    else:
        kwargs.update(head="base", branch_label=plugin, depends_on=core_head())

    if autogenerate:
        others = tuple(f"{n}_" for n in specs if n != plugin and n.startswith(f"{plugin}_"))
        cfg.attributes["autogenerate"] = {
            "include_object": _only_tables_of(plugin, others),
            "render_as_batch": True,
            "render_item": _render_public_types,
            "process_revision_directives": _sqlite_expected_left_out,
        }
        with throwaway_database(against) as url:
            from .db import make_engine

            engine = make_engine(url)
            try:
                with engine.begin() as conn:
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "core@head")  # first: plugins' first revisions key onto its tables
                    command.upgrade(cfg, "heads")
                with engine.begin() as conn:
                    cfg.attributes["connection"] = conn
                    made = command.revision(cfg, **kwargs)
            finally:
                engine.dispose()
    else:
        made = command.revision(cfg, **kwargs)
    assert made is not None and not isinstance(made, list)
    depends = made.module.depends_on
    return NewRevision(
        path=Path(made.path),
        revision=made.revision,
        down_revision=made.module.down_revision,
        depends_on=depends if depends is None or isinstance(depends, str) else ",".join(depends),
    )


def _only_tables_of(plugin: str, others: tuple[str, ...]) -> Any:
    """``include_object`` for a plugin's revision: its ``<plugin>_*`` tables only.

    ``others``: prefixes of plugins whose names extend this one's
    (``pool_extra_`` for ``pool``), whose tables are not this plugin's.
    """
    prefix = f"{plugin}_"

    def mine(name: str | None) -> bool:
        return bool(name) and name.startswith(prefix) and not (others and name.startswith(others))  # type: ignore[union-attr]

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table":
            return mine(name)
        table = getattr(obj, "table", None)
        return table is None or mine(table.name)

    return include


def _render_public_types(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render the core's column types as ``pelago.plugin.<Type>``: plugins import nothing else.

    Also ``JSONB`` (in ``JsonDoc``) with its default ``astext_type``, which
    Alembic would render as a bare ``Text()`` that the revision does not import.
    """
    import pelago.plugin

    if type_ != "type":
        return False
    cls = type(obj)
    if cls.__module__ == "pelago.core.db" and getattr(pelago.plugin, cls.__name__, None) is cls:
        autogen_context.imports.add("import pelago.plugin")
        return f"pelago.plugin.{obj!r}"
    if isinstance(obj, JSONB) and type(obj.astext_type) is Text and obj.astext_type.length is None:
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return "postgresql.JSONB(astext_type=sa.Text())"
    return False


def _sqlite_expected_left_out(context: Any, revision: Any, directives: list[Any]) -> None:
    """``process_revision_directives`` for a plugin's autogenerated revision: on SQLite, what :func:`diff` expects.

    A tenant table is rendered as the models key it, ``(tenant_id, id)``;
    SQLite makes that ``id INTEGER PRIMARY KEY`` with a UNIQUE ``(tenant_id,
    id)`` (``pelago.core.db``'s compile hooks), so comparing once it is
    migrated would propose dropping the UNIQUE and more. Those differences
    (:func:`_sqlite_tenant_keys`) are left out here as in :func:`diff`, and
    the downgrade is rebuilt from what is left: a revision with nothing new
    is empty on either database. A table created in the revision keeps all
    its operations (the identity's index is one SQLite would not need, but
    the revision is PostgreSQL's too).
    """
    from alembic.operations import ops

    script = directives[0]
    if context.connection.dialect.name != "sqlite" or script.upgrade_ops is None:
        return
    upgrade = script.upgrade_ops
    created = {op.table_name for op in upgrade.ops if isinstance(op, ops.CreateTableOp)}
    found: list[tuple[Any, Any]] = []  # (diff tuple, op) for each op that is one difference
    for op in upgrade.ops:
        if isinstance(op, ops.ModifyTableOps) and op.table_name in created:
            continue
        for inner in op.ops if isinstance(op, ops.ModifyTableOps) else [op]:
            try:
                difference = inner.to_diff_tuple()
            except (ValueError, AttributeError, NotImplementedError):  # not one of the kinds filtered
                continue
            if isinstance(difference, tuple):
                found.append((difference, inner))
    kept = {id(d) for d in _sqlite_tenant_keys([d for d, _ in found])}
    dropped = {id(inner) for d, inner in found if id(d) not in kept}
    if not dropped:
        return
    for op in upgrade.ops:
        if isinstance(op, ops.ModifyTableOps):
            op.ops = [o for o in op.ops if id(o) not in dropped]
    upgrade.ops = [
        o for o in upgrade.ops if id(o) not in dropped and not (isinstance(o, ops.ModifyTableOps) and not o.ops)
    ]
    script.downgrade_ops = upgrade.reverse()


@contextmanager
def throwaway_database(against: str | None = None) -> Iterator[str]:
    """The URL of an empty database that is deleted on exit.

    ``against`` ``None`` or a SQLite URL: a file in a temporary folder. A
    PostgreSQL URL: a new database on that server (its user needs
    ``CREATEDB``); the database named in the URL is only used to create and
    drop it. Nothing in the database of ``against`` is read or changed.
    """
    if against is None or against.startswith("sqlite"):
        with tempfile.TemporaryDirectory(prefix="pelago-") as folder:
            yield f"sqlite:///{Path(folder) / 'throwaway.db'}"
        return
    url = make_url(against)
    if url.get_backend_name() != "postgresql":
        raise PelagoError(f"a throwaway database needs SQLite or PostgreSQL, not {url.get_backend_name()}")
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    name = f"pelago_throwaway_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
                )
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        admin.dispose()
