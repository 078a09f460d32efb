"""Do the models and the migrations agree? A plugin's tables come from its migrations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Engine

    from pelago.core.host import PluginHost


def assert_models_match_migrations(engine: Engine, host: PluginHost) -> None:
    """Fail, listing the differences, unless ``engine``'s migrated schema matches the models.

    Compares the tables of the core and of ``host``'s plugins (by their name
    prefix) with what Alembic autogenerate would change: a table, column,
    index or constraint in a model but not in the database means a migration
    is missing (``pelago db revision --plugin NAME -m MSG --autogenerate``
    writes it). Use the run's migrated ``engine`` and ``pelago_migration_host``.
    """
    from pelago.core import migrate

    differences = migrate.diff(engine, host)
    if differences:
        lines = "\n".join(f"  - {describe(d)}" for d in differences)
        raise AssertionError(
            "the models and the migrations disagree (add a migration, or fix the model):\n" + lines
        )


def describe(difference: Any) -> str:
    """One line for one item of Alembic's ``compare_metadata`` result."""
    if isinstance(difference, list):
        return "; ".join(describe(d) for d in difference)
    try:
        kind, *args = difference
        if kind.startswith("modify_"):
            _schema, table, column, _existing, database, models = args
            return f"{kind} {table}.{column}: {database!r} in the database, {models!r} in the models"
        if kind in ("add_column", "remove_column"):
            _schema, table, column = args
            return f"{kind} {table}.{column.name}: {_where(kind)}"
        (obj,) = args
        table = getattr(obj, "table", None)
        name = obj.name if table is None else f"{table.name}.{obj.name or _columns(obj)}"
        return f"{kind} {name}: {_where(kind)}"
    except (TypeError, ValueError, AttributeError):
        return repr(difference)


def _where(kind: str) -> str:
    if kind.startswith("add_"):
        return "in the models, not made by the migrations"
    return "made by the migrations, not in the models"


def _columns(obj: Any) -> str:
    return "(" + ", ".join(c.name for c in getattr(obj, "columns", ())) + ")"


def assert_tenant_distributable(engine: Engine, prefixes: Sequence[str] | None = None) -> None:
    """Fail, listing each problem, unless ``engine``'s migrated tables could be distributed by ``tenant_id``.

    Every table the loaded models know (``prefixes`` narrows them, e.g.
    ``("myplugin_",)``) must have a NOT NULL ``tenant_id`` in every unique
    index and constraint and, on PostgreSQL, in its primary key, its
    exclusion constraints and every foreign key onto another tenant table
    (``tenant_key``), unless its model declares it a reference table with a
    reason (``__tenant_reference__``). docs/operations.md says why.
    """
    from pelago.core.tenant_keys import problems

    found = problems(engine, prefixes)
    if found:
        raise AssertionError(
            "these tables could not be distributed by tenant_id (TenantScoped keys them; "
            "tenant_key() makes keys onto other tenant tables):\n" + "\n".join(f"  - {p}" for p in found)
        )
