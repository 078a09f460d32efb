"""Tenant keys in the database: the migration step that adds them, and the check that they are there.

A schema can be distributed by tenant (Citus, docs/operations.md) when every
tenant table's primary key and unique indexes include ``tenant_id`` and every
foreign key between tenant tables goes through it. The models say so through
:class:`~pelago.core.db.TenantScoped` and :func:`~pelago.core.db.tenant_key`;
:func:`migrate_to_tenant_keys` turns an existing database into that shape with
ALTERs; :func:`problems` lists where a migrated database falls short.

Tables that are read before the tenant is known, or that belong to no tenant,
are *reference tables* (replicated to every node under Citus): the models
declare them with a reason (``__tenant_reference__`` or
``info={"tenant_reference": ...}``), and the check skips them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, inspect, text

from .db import Base, identity_index


def reference_tables() -> dict[str, str]:
    """The declared reference tables of the loaded models, with the reason each gives."""
    return {
        name: str(table.info["tenant_reference"])
        for name, table in Base.metadata.tables.items()
        if table.info.get("tenant_reference")
    }


def _tenant_column(columns: Sequence[Any]) -> Any:
    return next((c for c in columns if c["name"] == "tenant_id"), None)


def migrate_to_tenant_keys(tables: Sequence[str], reference: Iterable[str] = ()) -> None:
    """In an Alembic revision: give ``tables`` their tenant keys, with ALTERs on a populated database.

    On PostgreSQL, for each of ``tables`` whose primary key does not start
    with ``tenant_id``: every foreign key onto it (from any table, a plugin's
    too) and every single-column key from it onto another tenant table is
    dropped; its primary key becomes ``(tenant_id, <key>)`` (a UNIQUE or
    plain index on ``(tenant_id, <key>)`` made redundant by it is dropped,
    and a plain index on ``<key>`` is made for the lookups by the ORM
    identity that the old key served); then the keys
    are made again through ``tenant_id``, with their names, ``ON DELETE``
    and ``ON UPDATE`` (``SET NULL`` clears only the pointing column). The
    rows are not rewritten; adding a primary key builds its index.

    On SQLite (never distributed; it cannot alter a key without rebuilding
    the table, and a rebuild would fire ``ON DELETE CASCADE`` with foreign
    keys on) the primary key and foreign keys stay; a UNIQUE
    ``(tenant_id, <key>)`` index is added (a plain one on the same columns is
    dropped) so that keys through the tenant
    (:func:`~pelago.core.db.tenant_key`) can point at the table.

    ``reference``: tables with a ``tenant_id`` that stay reference tables
    (keys onto them are left alone). Tables with a nullable ``tenant_id``
    (users: operators have none) are reference tables anyway.
    """
    from alembic import op

    conn = op.get_bind()
    insp = inspect(conn)
    existing = set(insp.get_table_names())
    reference = set(reference)
    keys = {t: insp.get_pk_constraint(t) for t in tables if t in existing}
    targets = [t for t, pk in keys.items() if pk["constrained_columns"] and pk["constrained_columns"][0] != "tenant_id"]
    if conn.dialect.name == "sqlite":
        for t in targets:
            cols = ["tenant_id", *keys[t]["constrained_columns"]]
            op.create_index(f"uq_{t}_{'_'.join(cols)}", t, cols, unique=True, if_not_exists=True)
            for ix in insp.get_indexes(t):  # the unique pair covers these
                if list(ix["column_names"]) == cols and not ix.get("unique"):
                    op.drop_index(str(ix["name"]), t)
        return

    columns = {t: insp.get_columns(t) for t in existing}

    def distributed(t: str) -> bool:
        tenant = _tenant_column(columns[t])
        return t not in reference and tenant is not None and not tenant["nullable"]

    remake: list[tuple[str, Any]] = []
    for t in sorted(existing):
        for fk in insp.get_foreign_keys(t):
            onto = fk["referred_table"]
            through_tenant = "tenant_id" in fk["constrained_columns"]
            if onto in targets or (t in targets and distributed(onto) and not through_tenant):
                if _tenant_column(columns[t]) is None:
                    raise RuntimeError(f"{t}.{fk['constrained_columns']} points at {onto} but {t} has no tenant_id")
                remake.append((t, fk))
    for t, fk in remake:
        op.drop_constraint(str(fk["name"]), t, type_="foreignkey")
    for t in targets:
        pk: Any = keys[t]
        cols = ["tenant_id", *pk["constrained_columns"]]
        op.drop_constraint(pk["name"], t, type_="primary")
        op.create_primary_key(pk["name"] or f"pk_{t}", t, cols)
        for uq in insp.get_unique_constraints(t):
            if list(uq["column_names"]) == cols:
                op.drop_constraint(str(uq["name"]), t, type_="unique")
        for ix in insp.get_indexes(t):  # the new key covers these (a list's order, say)
            if list(ix["column_names"]) == cols and not ix.get("dialect_options", {}).get("postgresql_where"):
                op.drop_index(str(ix["name"]), t)
        identity = pk["constrained_columns"]
        op.create_index(identity_index(t, identity), t, identity)
    for t, fk in remake:
        local = [c for c in fk["constrained_columns"] if c != "tenant_id"]
        remote = [c for c in fk["referred_columns"] if c != "tenant_id"]
        options = fk.get("options") or {}
        ondelete = options.get("ondelete")
        if ondelete and ondelete.upper() == "SET NULL":
            ondelete = f"SET NULL ({', '.join(local)})"
        op.create_foreign_key(
            fk["name"], t, fk["referred_table"], ["tenant_id", *local], ["tenant_id", *remote],
            ondelete=ondelete, onupdate=options.get("onupdate"),
            deferrable=options.get("deferrable"), initially=options.get("initially"),
        )


def tenant_key_as_migrated(columns: Sequence[str], table: str, *, name: str | None = None,
                           ondelete: str | None = None) -> Any:
    """In a revision written before the tenant keys: the key onto ``table`` as the database being migrated allows.

    A :func:`~pelago.core.db.tenant_key` when ``table`` already has its tenant
    key there (a new database: the core is upgraded first), else the key on
    ``columns`` alone that the revision made when it was written (an existing
    database, upgraded through it to the revision that re-keys it). Either
    way the database ends in the same shape.
    """
    from alembic import op
    from sqlalchemy import ForeignKeyConstraint

    from .db import tenant_key

    insp = inspect(op.get_bind())
    key = [c for c in insp.get_pk_constraint(table)["constrained_columns"] if c != "tenant_id"]
    keyed = ["tenant_id", *key]
    has_key = insp.get_pk_constraint(table)["constrained_columns"] == keyed or any(
        list(ix["column_names"]) == keyed  # type: ignore[call-overload]
        for ix in [*insp.get_unique_constraints(table), *insp.get_indexes(table)] if ix.get("unique", True))
    if has_key:
        return tenant_key(list(columns), table, ondelete=ondelete, name=name, key=key[0] if len(key) == 1 else "id")
    return ForeignKeyConstraint(list(columns), [f"{table}.{c}" for c in key], name=name, ondelete=ondelete)


def problems(bind: Engine | Connection, prefixes: Sequence[str] | None = None) -> list[str]:
    """Where the migrated schema of ``bind`` (an engine, or a connection to look inside its transaction) could not be distributed by ``tenant_id``; empty when it can.

    Looks at the tables the loaded models know (``prefixes`` narrows them,
    e.g. ``("pool_",)``). Every table that is not a declared reference table
    must have a NOT NULL ``tenant_id`` in its unique indexes and constraints
    and, on PostgreSQL, in its primary key, its exclusion constraints and
    every foreign key onto another such table (through the referenced
    ``tenant_id``). On SQLite the primary and foreign keys are not looked at
    (see :func:`migrate_to_tenant_keys`).
    """
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return problems(conn, prefixes)
    insp = inspect(bind)
    known = set(Base.metadata.tables)
    names = sorted(t for t in insp.get_table_names() if t in known and (not prefixes or t.startswith(tuple(prefixes))))
    reference = reference_tables()
    postgresql = bind.dialect.name == "postgresql"
    found: list[str] = []

    def is_distributed(t: str) -> bool:
        return t in known and t not in reference

    for t in names:
        if t in reference:
            continue
        tenant = _tenant_column(insp.get_columns(t))
        if tenant is None:
            found.append(f"{t}: no tenant_id, and not declared a reference table")
            continue
        if tenant["nullable"]:
            found.append(f"{t}: tenant_id is nullable")
        for uq in insp.get_unique_constraints(t):
            if "tenant_id" not in uq["column_names"]:
                found.append(f"{t}: unique constraint {uq['name']} {tuple(uq['column_names'])} lacks tenant_id")
        for ix in insp.get_indexes(t):
            if ix.get("unique") and "tenant_id" not in ix["column_names"]:
                found.append(f"{t}: unique index {ix['name']} {tuple(ix['column_names'])} lacks tenant_id")
        if not postgresql:
            continue
        pk = insp.get_pk_constraint(t)["constrained_columns"]
        if "tenant_id" not in pk:
            found.append(f"{t}: primary key {tuple(pk)} lacks tenant_id")
        for fk in insp.get_foreign_keys(t):
            onto = fk["referred_table"]
            if not is_distributed(onto):
                continue
            pairs = dict(zip(fk["constrained_columns"], fk["referred_columns"], strict=True))
            if pairs.get("tenant_id") != "tenant_id":
                found.append(f"{t}: foreign key {fk['name']} {tuple(fk['constrained_columns'])} onto {onto} "
                             "does not go through tenant_id")
    if postgresql and names:
        rows = bind.execute(text(
            "SELECT c.conrelid::regclass::text, c.conname, "
            "EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.conrelid "
            "AND a.attnum = ANY (c.conkey) AND a.attname = 'tenant_id') "
            "FROM pg_constraint c WHERE c.contype = 'x' AND c.conrelid::regclass::text = ANY (:names)"
        ), {"names": [t for t in names if t not in reference]}).all()
        found += [f"{t}: exclusion constraint {name} lacks tenant_id" for t, name, has in rows if not has]
    return found
