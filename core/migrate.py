"""Alembic glue: the core branch plus one labelled branch per deployed plugin.

A plugin's first revision sets ``branch_labels = ("<plugin>",)`` and
``depends_on`` the core revision it needs; ``pelago db upgrade`` upgrades every
head, so deploying a plugin creates its tables and nothing else changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from .host import PluginHost

HERE = Path(__file__).parent / "migrations"


def _installed_migrations(host: PluginHost) -> list[Path]:
    """Migration folders of deployed plugins and of installed but undeployed ones.

    An undeployed plugin's revisions may already be in the database (it was
    deployed once; switching off never deletes data): Alembic must be able to
    read them even though nothing upgrades that branch any more.
    """
    from importlib.metadata import entry_points

    from .host import ENTRY_POINT_GROUP
    from .spec import PluginSpec

    folders = [_versions(Path(s.migrations)) for s in host.specs.values() if s.migrations is not None]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in host.specs:
            continue
        try:
            spec = ep.load()
        except Exception:  # noqa: BLE001 - a broken plugin is reported elsewhere
            continue
        if isinstance(spec, PluginSpec) and spec.migrations is not None:
            folders.append(_versions(Path(spec.migrations)))
    return folders


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
    cfg = alembic_config(engine, host)
    script = ScriptDirectory.from_config(cfg)
    heads = {script.get_revision(t).revision for t in targets(host)}  # type: ignore[union-attr]
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    applied: set[str] = set()
    for rev in current:
        applied.update(r.revision for r in script.iterate_revisions(rev, "base"))
    return sorted(heads - applied)


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
        return list(compare_metadata(ctx, Base.metadata))
