"""Alembic environment shared by the core branch and every plugin branch.

Run through :mod:`pelago.core.migrate` (``pelago db upgrade``), which passes
the connection and the deployed plugins in ``config.attributes``.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine

from pelago.core import models  # noqa: F401 - registers the core tables
from pelago.core.db import Base

config = context.config
prefixes: tuple[str, ...] = tuple(config.attributes.get("table_prefixes", ("core_",)))


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Only the core's tables and those of deployed plugins are ours to compare."""
    if type_ == "table":
        return bool(name) and name.startswith(prefixes)  # type: ignore[union-attr]
    table = getattr(obj, "table", None)
    if table is not None:
        return table.name.startswith(prefixes)
    return True


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as conn:
            _configure_and_run(conn)
        return
    _configure_and_run(connection)


def _configure_and_run(connection: Any) -> None:
    # A plugin's revision (pelago.core.migrate.revision) brings its own table
    # filter, batch mode on every dialect, a renderer for public types, and on
    # SQLite leaves out the differences its tenant keys are expected to show.
    options = config.attributes.get("autogenerate", {})
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_object=options.get("include_object", include_object),
        render_as_batch=options.get("render_as_batch", connection.dialect.name == "sqlite"),
        render_item=options.get("render_item"),
        process_revision_directives=options.get("process_revision_directives"),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
