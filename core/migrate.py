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


def alembic_config(engine: Engine, host: PluginHost, connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    locations = [str(HERE / "versions")]
    for spec in host.specs.values():
        if spec.migrations is not None:
            locations.append(str(Path(spec.migrations)))
    cfg.set_main_option("version_locations", " ".join(locations))
    cfg.set_main_option("path_separator", "space")
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["table_prefixes"] = ("core_", *(f"{name}_" for name in host.specs))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, host: PluginHost, target: str = "heads") -> None:
    """Bring the core and every deployed plugin's tables up to date."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(engine, host, conn), target)


def pending(engine: Engine, host: PluginHost) -> list[str]:
    """Heads not yet applied (empty when the database is current)."""
    cfg = alembic_config(engine, host)
    heads = set(ScriptDirectory.from_config(cfg).get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    script = ScriptDirectory.from_config(cfg)
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
