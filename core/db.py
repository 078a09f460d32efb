"""Engine, sessions and the tenant filter.

Every tenant-owned model inherits :class:`TenantScoped`. A session opened for a
tenant (``session.info["tenant_id"]``) adds ``tenant_id = :tenant`` to every ORM
SELECT, UPDATE and DELETE on those models (``do_orm_execute`` +
``with_loader_criteria``), and stamps new rows with it before flush, so a
forgotten WHERE cannot leak another tenant's data. Raw SQL on tenant tables
must add the tenant itself.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Engine,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    create_engine,
    event,
    inspect,
    make_url,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    ORMExecuteState,
    Session,
    declared_attr,
    mapped_column,
    sessionmaker,
    with_loader_criteria,
)
from sqlalchemy.schema import CreateColumn
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
JsonDoc = JSON().with_variant(JSONB(), "postgresql")



def _fk_column(constraint: Any, _table: Any) -> str:
    """The column a foreign key is named after: its first one, skipping the ``tenant_id`` of a tenant key.

    So ``(tenant_id, lead_id) -> core_lead`` is named ``fk_<table>_lead_id_core_lead``, as the
    single-column key it replaced was, and two tenant keys of one table onto one table differ.
    """
    keys = [k for k in constraint.column_keys if k != "tenant_id"] or list(constraint.column_keys)
    return str(keys[0])


NAMING: dict[str, Any] = {
    "fk_column": _fk_column,
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(fk_column)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes, stored in UTC on every backend.

    SQLite has no timezone type and hands back naive values; this type refuses
    naive input and re-attaches UTC on the way out, so the rest of the code
    never sees a naive datetime.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Money(TypeDecorator[Decimal]):
    """Money to the cent: NUMERIC(18, 2) on PostgreSQL, integer cents on SQLite.

    SQLite has no decimal type and would do arithmetic in floating point
    (0.10 + 0.20 > 0.30); integer cents keep sums and comparisons in SQL exact.
    """

    impl = Numeric(18, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(18, 2, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = Decimal(value)
        if dialect.name == "sqlite":
            return int((value * 100).to_integral_value())
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return (Decimal(int(value)) / 100).quantize(Decimal("0.01"))
        return Decimal(value).quantize(Decimal("0.01"))


class Base(DeclarativeBase):
    """The one declarative base of the core and of every plugin."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UtcDateTime(),
        Decimal: Money(),
        dict[str, Any]: JsonDoc,
    }


class TenantKeyed:
    """Mixin making a table's primary key ``(tenant_id, <its key>)`` while the ORM identity stays its key.

    Part of :class:`TenantScoped`; alone for a table with a ``tenant_id`` the
    session must not filter (the scheduler's per-tenant runs).
    """

    @classmethod
    def __table_cls__(cls, name: str, metadata: MetaData, *args: Any, **kw: Any) -> Table:
        table = Table(name, metadata, *args, **kw)
        reason = getattr(cls, "__tenant_reference__", None)
        if reason:
            table.info["tenant_reference"] = reason
        else:
            key_by_tenant(table)
        return table

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        table: Table = cls.__table__  # type: ignore[attr-defined]
        identity = table.info.get("identity")
        return {"primary_key": [table.c[n] for n in identity]} if identity else {}


class TenantScoped(TenantKeyed):
    """Mixin for every tenant-owned table: a ``tenant_id`` the session filters on, leading its primary key.

    The table's primary key is ``tenant_id`` followed by the columns the model
    marks ``primary_key=True`` (``(tenant_id, id)``), so the schema can be
    distributed by tenant (Citus, docs/operations.md). The ORM identity stays
    the model's own key: ``session.get(Model, id)`` and the code keep working,
    and ids stay globally unique (one sequence per table). The identity keeps
    a plain index (``ix_<table>_id``) for the ORM's UPDATE and DELETE by id.
    A model with ``__mapper_args__`` of its own adds ``"primary_key": [id]``
    to them. On SQLite the
    migrations keep ``id INTEGER PRIMARY KEY`` (SQLite only auto-increments
    that exact form) with a UNIQUE ``(tenant_id, id)`` beside it.

    A table read before the tenant is known (by a secret token, say) sets
    ``__tenant_reference__ = "why"``: it keeps its own key and globally unique
    indexes, and would be a Citus reference table.
    """

    @declared_attr
    def tenant_id(cls) -> Mapped[int]:
        return mapped_column(
            BigId, ForeignKey("core_tenant.id", ondelete="CASCADE"), nullable=False
        )


def key_by_tenant(table: Table) -> None:
    """Make ``table``'s primary key ``(tenant_id, <its key>)``, remembering its key as the ORM identity."""
    pk = list(table.primary_key.columns)
    if not pk or "tenant_id" not in table.c or table.c.tenant_id in pk:
        return
    table.info["identity"] = [c.name for c in pk]
    if len(pk) == 1 and pk[0].autoincrement == "auto" and not pk[0].foreign_keys:
        pk[0].autoincrement = True  # still the sequence's (no longer implied once the key is composite)
    table.c.tenant_id.primary_key = True
    table.append_constraint(PrimaryKeyConstraint(table.c.tenant_id, *pk))
    # The ORM finds, updates and deletes a row by its identity alone: an index for that,
    # which (tenant_id, id) is not (the SQLite migrations leave it out: there the identity is the key).
    Index(identity_index(table.name, [c.name for c in pk]), *pk)


def identity_index(table: str, identity: Sequence[str]) -> str:
    """The name of the plain index on a tenant-keyed table's ORM identity (``ix_<table>_<columns>``)."""
    return f"ix_{table}_{'_'.join(identity)}"


def tenant_key(columns: Sequence[str], table: str, *, ondelete: str | None = None,
               key: str = "id", name: str | None = None) -> ForeignKeyConstraint:
    """A foreign key onto another tenant table through its tenant: ``(tenant_id, *columns) -> table (tenant_id, key)``.

    For ``__table_args__`` of a :class:`TenantScoped` model, instead of a
    column's ``ForeignKey``: the row can only point at a row of its own
    tenant, and the key still holds when the tables are distributed by
    tenant. ``ondelete="SET NULL"`` becomes ``SET NULL (<columns>)``
    (PostgreSQL 15+): only the pointing columns are cleared, never
    ``tenant_id``. ``key`` is the referenced table's own key column (for a
    table keyed by a core id, e.g. ``"lead_id"``).
    """
    if ondelete == "SET NULL":
        ondelete = f"SET NULL ({', '.join(columns)})"
    return ForeignKeyConstraint(
        ["tenant_id", *columns], [f"{table}.tenant_id", f"{table}.{key}"], ondelete=ondelete, name=name
    )


class TenantSession(Session):
    """A session that may be bound to one tenant through ``info["tenant_id"]``."""

    @property
    def tenant_id(self) -> int | None:
        return self.info.get("tenant_id")


@event.listens_for(TenantSession, "do_orm_execute")
def _scope_to_tenant(state: ORMExecuteState) -> None:
    tenant_id = state.session.info.get("tenant_id")
    if tenant_id is None or state.execution_options.get("all_tenants"):
        return
    if state.is_select or state.is_update or state.is_delete:
        state.statement = state.statement.options(
            with_loader_criteria(
                TenantScoped,
                lambda cls: cls.tenant_id == tenant_id,
                include_aliases=True,
                track_closure_variables=False,
            )
        )


@event.listens_for(TenantSession, "before_flush")
def _stamp_tenant(session: Session, _ctx: Any, _instances: Any) -> None:
    tenant_id = session.info.get("tenant_id")
    if tenant_id is None:
        return
    for obj in session.new:
        if isinstance(obj, TenantScoped):
            current = getattr(obj, "tenant_id", None)
            if current is None:
                obj.tenant_id = tenant_id  # type: ignore[attr-defined]
            elif current != tenant_id:
                raise PermissionError(
                    f"{type(obj).__name__} of tenant {current} written in a session of tenant {tenant_id}"
                )


#: Tables whose rows make up a tenant's routing configuration, with the columns whose change does
#: not alter it (the round-robin pointer moves on every routed lead; a password is not routing).
ROUTING_TABLES: dict[str, frozenset[str]] = {
    "core_routing_settings": frozenset({"updated_at"}),
    "core_routing_rule": frozenset(),
    "core_team": frozenset({"rr_pointer"}),
    "core_user": frozenset({"password_hash"}),
}
#: ``session.info`` key: tenants whose routing version this (uncommitted) transaction bumped
ROUTING_BUMPED = "pelago_routing_bumped"
#: ``session.info`` key: ``(tenant_id, version)`` of the routing configuration, read with the
#: request's credential (``hostapp.auth``), for the rest of the request (dropped when a transaction ends
#: after it is set); the credential's transaction may have committed already (SQLite, a large body)
ROUTING_KNOWN = "pelago_routing_version"


@event.listens_for(TenantSession, "before_flush")
def _bump_routing_version(session: Session, _ctx: Any, _instances: Any) -> None:
    """Bump ``core_routing_version`` of every tenant whose routing configuration this flush changes.

    In the flush's own transaction, so the cached configurations of every
    process (:mod:`pelago.core.routing_config`) go stale exactly when the edit
    commits, and never before. Whatever the way in (API, CLI, a service
    call): every write of these tables goes through the ORM unit of work;
    the one bulk UPDATE of them (the round-robin pointer) is not configuration.
    """
    tenants: set[int] = set()
    for obj in (*session.new, *session.deleted):
        table = getattr(obj, "__tablename__", None)
        if table in ROUTING_TABLES and getattr(obj, "tenant_id", None) is not None:
            tenants.add(obj.tenant_id)
    for obj in session.dirty:
        table = getattr(obj, "__tablename__", None)
        if table not in ROUTING_TABLES or getattr(obj, "tenant_id", None) is None:
            continue
        ignored = ROUTING_TABLES[table]
        state = inspect(obj)
        if any(a.key not in ignored and a.history.has_changes() for a in state.attrs):
            tenants.add(obj.tenant_id)  # type: ignore[attr-defined]
    if tenants:
        bump_routing_version(session, tenants)


def bump_routing_version(session: Session, tenants: Iterable[int]) -> None:
    """Move the routing version of ``tenants`` on, in ``session``'s transaction.

    For a change the listener cannot see (raw SQL on a routing table); the
    ORM's writes bump it themselves.
    """
    conn = session.connection()
    # A first row starts at the clock (microseconds), not at 1: a tenant id that SQLite hands out
    # again after a deletion never meets a version cached for the tenant deleted.
    start = time.time_ns() // 1000
    for tenant_id in sorted(tenants):  # one order for every writer: no deadlocks
        conn.execute(_BUMP, {"tenant": tenant_id, "start": start})
    session.info.setdefault(ROUTING_BUMPED, set()).update(tenants)


_BUMP = text(
    "INSERT INTO core_routing_version (tenant_id, version) VALUES (:tenant, :start) "
    "ON CONFLICT (tenant_id) DO UPDATE SET version = core_routing_version.version + 1"
)


@event.listens_for(TenantSession, "after_commit")
@event.listens_for(TenantSession, "after_rollback")
def _forget_routing_bump(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(ROUTING_BUMPED, None)
        session.info.pop(ROUTING_KNOWN, None)


class WriteGate:
    """One SQLite transaction at a time in this process, first come first served, with a bounded wait.

    SQLite has one writer, and every Pelago transaction on it takes the write
    lock up front (``BEGIN IMMEDIATE``). Left to SQLite, threads that wait
    for the lock poll it with growing sleeps, unfairly, each holding a pooled
    connection meanwhile, until the pool runs dry and a caller gets a 500.
    The gate queues them in arrival order instead; one that waited longer
    than ``wait`` seconds gets :class:`~pelago.core.errors.Busy` (503 with
    ``Retry-After``) before it has written anything.
    """

    def __init__(self, wait: float) -> None:
        self.wait = wait
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._holder: object | None = None

    def acquire(self, owner: object) -> None:
        from .errors import Busy

        ticket = object()
        deadline = time.monotonic() + self.wait
        with self._cond:
            self._queue.append(ticket)
            while self._holder is not None or self._queue[0] is not ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._queue.remove(ticket)
                    self._cond.notify_all()
                    raise Busy(f"the database is busy: waited {self.wait:g} s for the write lock; try again",
                               retry_after=max(1, round(self.wait / 4)))
                self._cond.wait(remaining)
            self._queue.popleft()
            self._holder = owner

    def release(self, owner: object) -> None:
        with self._cond:
            if self._holder is owner:
                self._holder = None
                self._cond.notify_all()

    @property
    def waiting(self) -> int:
        """Transactions queued behind the one running (for tests and diagnostics)."""
        with self._cond:
            return len(self._queue)


_GATES: weakref.WeakKeyDictionary[Engine, WriteGate] = weakref.WeakKeyDictionary()


def gate_of(engine: Engine) -> WriteGate:
    """The :class:`WriteGate` of a SQLite engine made by :func:`make_engine`."""
    return _GATES[engine]


def make_engine(url: str, *, write_wait: float = 30.0, **kwargs: Any) -> Engine:
    """An engine with the settings Pelago relies on for each backend.

    ``write_wait``: on SQLite, the longest a transaction queues for the write
    lock (:class:`WriteGate`) before it is refused with a 503.
    """
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        on_file = url.startswith("sqlite:///") and ":memory:" not in url and "mode=memory" not in url
        if on_file and "poolclass" not in kwargs:
            # Waiters hold a connection while they queue at the gate: no pool limit
            # (beyond the first 5 kept, connections are closed when returned).
            kwargs.setdefault("pool_size", 5)
            kwargs.setdefault("max_overflow", -1)
        engine = create_engine(url, **kwargs)
        gate = WriteGate(write_wait)
        _GATES[engine] = gate

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # We issue BEGIN ourselves (below): pysqlite's own handling breaks
            # SAVEPOINT. Foreign keys on, WAL for readers beside the writer.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front: a transaction never fails
            # half-way with SQLITE_BUSY when it upgrades from reading to writing.
            owner = conn.connection.dbapi_connection
            gate.acquire(owner)
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                gate.release(owner)
                raise

        @event.listens_for(engine, "commit")
        @event.listens_for(engine, "rollback")
        def _sqlite_end(conn: Any) -> None:
            if not conn.invalidated:
                gate.release(conn.connection.dbapi_connection)

        @event.listens_for(engine, "checkin")
        def _sqlite_checkin(dbapi_conn: Any, _record: Any) -> None:
            gate.release(dbapi_conn)  # a connection returned mid-transaction

        # A connection invalidated (a lost or broken one, ``Connection.invalidate()``)
        # or closed mid-transaction ends it without a commit or rollback event, and
        # its checkin names no DBAPI connection any more: release the gate here,
        # or every later transaction would queue behind a holder that is gone.
        @event.listens_for(engine, "invalidate")
        @event.listens_for(engine, "soft_invalidate")
        def _sqlite_invalidated(dbapi_conn: Any, _record: Any, _exc: Any) -> None:
            gate.release(dbapi_conn)

        @event.listens_for(engine, "close")
        @event.listens_for(engine, "detach")
        def _sqlite_closed(dbapi_conn: Any, _record: Any) -> None:
            gate.release(dbapi_conn)

        return engine
    from . import crypto

    # Production: secrets at rest need PELAGO_SECRET_KEYS, never a key file made on one host.
    crypto.refuse_key_file(f"a {make_url(url).get_backend_name()} database")
    ping = kwargs.pop("pool_pre_ping", True)
    # A host that does not answer fails a connection in 10 s (the readiness probe, a request) instead of hanging.
    kwargs.setdefault("connect_args", {"connect_timeout": 10})
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    if ping:
        ping_when_in_doubt(engine)
    return engine


#: A pooled PostgreSQL connection idle longer than this is pinged before use whatever its socket says.
PING_AFTER_IDLE_S = 10.0
_IDLE_SINCE = "pelago_idle_since"


def ping_when_in_doubt(engine: Engine) -> None:
    """Check a pooled PostgreSQL connection before use, with a round trip only when in doubt.

    SQLAlchemy's ``pool_pre_ping`` sends a query at every checkout: one more
    round trip per transaction, the largest single cost of a short one (a
    claim). A server that ends a connection (a restart, a failover,
    ``pg_terminate_backend``, an idle timeout) sends its goodbye and closes
    the socket, so the socket has something to read; a live idle connection's
    has nothing. The ping is sent only then, or when the connection sat in
    the pool longer than :data:`PING_AFTER_IDLE_S` (a peer that vanished
    without a word), or is closed or broken. A dead connection found so is
    replaced by a new one, as ``pool_pre_ping`` does; one that dies after the
    check fails its statement, as one that dies after a ping would.
    """
    import select

    from sqlalchemy.exc import DisconnectionError

    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _idle_from(dbapi_conn: Any, record: Any) -> None:
        if dbapi_conn is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None:
            return  # a fresh connection: just opened
        try:
            doubt = time.monotonic() - since > PING_AFTER_IDLE_S or dbapi_conn.closed or dbapi_conn.broken
            if not doubt:
                poll = select.poll()
                poll.register(dbapi_conn.fileno(), select.POLLIN)
                doubt = bool(poll.poll(0))  # readable while idle: the server said something (goodbye)
        except (OSError, ValueError, dialect.loaded_dbapi.Error):
            doubt = True  # no socket any more
        if not doubt:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as err:
            raise DisconnectionError("the pooled connection is gone") from err  # the pool opens a new one


def insert_ignoring_conflict(
    session: Session, table: Any, values: dict[str, Any], index_elements: list[str], index_where: Any
) -> int | None:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id, on PostgreSQL and SQLite.

    ``None`` means a row with the same key exists (or is being inserted by a
    transaction we waited for): the database, not a prior SELECT, decides.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:  # pragma: no cover
        raise NotImplementedError(dialect)
    stmt = (
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=conflict_key(session, table, index_elements), index_where=index_where)
        .returning(table.c.id)
    )
    return session.execute(stmt).scalar()


def conflict_key(session: Session, table: Any, columns: Sequence[Any]) -> list[Any]:
    """The ``ON CONFLICT (…)`` target for ``columns`` of ``table`` (a model or a ``Table``) on this database.

    ``columns`` (names or columns) as given, except on SQLite for a table's
    tenant key over an integer key (``["tenant_id", "lead_id"]`` of a table
    keyed by ``lead_id``): SQLite keeps that key as ``INTEGER PRIMARY KEY``
    and no conflict target can name the UNIQUE ``(tenant_id, lead_id)``
    beside it (SQLite matches no index that holds the rowid), so the target
    is the key alone, the same rows (ids are unique across tenants).
    """
    names = [c if isinstance(c, str) else c.name for c in columns]
    table = getattr(table, "__table__", table)
    identity = table.info.get("identity")
    if (dialect_name(session) == "sqlite" and identity is not None and len(identity) == 1
            and names == ["tenant_id", *identity]
            and isinstance(table.c[identity[0]].type, (Integer, BigInteger))):
        return [table.c[identity[0]]]
    return [table.c[n] for n in names]


def flush_or_conflict(session: Session, message: str, errors: dict[str, Any] | None = None) -> None:
    """Flush in a SAVEPOINT; a unique or foreign key violation becomes a 409.

    The database decides (no check-then-write), and the SAVEPOINT keeps the
    outer transaction usable for the error path.
    """
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm.exc import StaleDataError

    from .errors import Conflict

    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(message, errors) from None
    except StaleDataError:
        raise Conflict("the object changed meanwhile; reload and retry") from None


def per_transaction(session: Session, key: str) -> dict[Any, Any]:
    """A dict kept in ``session.info[key]`` for as long as the session's current transaction lasts.

    For what one transaction may remember and the next must not (rows locked,
    configuration read in it). Begins the transaction if none has begun yet,
    so the dict belongs to the one the caller's next statement runs in.
    """
    txn = session.get_transaction()
    if txn is None:
        session.connection()  # autobegin
        txn = session.get_transaction()
    memo = session.info.get(key)
    if memo is None or memo[0] is not txn:
        memo = (txn, {})
        session.info[key] = memo
    return memo[1]  # type: ignore[no-any-return]


def make_sessionmaker(engine: Engine) -> sessionmaker[TenantSession]:
    return sessionmaker(bind=engine, class_=TenantSession, expire_on_commit=False)


def dialect_name(session: Session) -> str:
    """``"postgresql"`` or ``"sqlite"``: the database behind ``session``."""
    return session.get_bind().dialect.name


def among(session: Session, column: Any, ids: Sequence[int]) -> Any:
    """``column IN ids``; on PostgreSQL ``= ANY(:array)``, one parameter however many ids."""
    if dialect_name(session) == "postgresql":
        from sqlalchemy import BigInteger, any_, bindparam
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam(None, list(ids), type_=ARRAY(BigInteger())))
    return column.in_(ids)


def upsert(
    session: Session, table: Any, rows: Sequence[Mapping[str, Any]], key: Sequence[str],
    update: Sequence[str] | None = None, *, index_where: Any = None,
) -> int:
    """``INSERT … ON CONFLICT (key) DO UPDATE`` of ``rows`` in one statement, on PostgreSQL and SQLite.

    ``table`` is a model or a ``Table``; ``key`` names the columns of a unique
    index (with ``index_where`` for a partial one; a tenant table's keys
    start with ``tenant_id``: name it); ``update`` the columns a
    conflicting row takes from the new one (default: every other column
    given but ``tenant_id``; an empty list means ``DO NOTHING``). Core-level:
    on a tenant's session ``tenant_id`` is filled in (and a row naming
    another tenant is an error); a conflicting row of another tenant is
    never updated (counted as not written). Returns the number of rows
    written. The database decides between insert and update, so two writers
    never both insert.
    """
    if not rows:
        return 0
    table = getattr(table, "__table__", table)
    dialect = dialect_name(session)
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    else:  # pragma: no cover
        raise NotImplementedError(dialect)
    values = [dict(r) for r in rows]
    tenant_id = session.info.get("tenant_id")
    scoped = "tenant_id" in table.c
    if scoped and tenant_id is not None:
        for v in values:
            if v.setdefault("tenant_id", tenant_id) != tenant_id:
                raise ValueError(f"upsert: a row of tenant {v['tenant_id']} on tenant {tenant_id}'s session")
    stmt = dialect_insert(table).values(values)
    columns = [c for c in update if c != "tenant_id"] if update is not None else [
        c for c in values[0] if c not in key and c != "tenant_id"]
    if columns:
        stmt = stmt.on_conflict_do_update(
            index_elements=conflict_key(session, table, key), index_where=index_where,
            set_={c: stmt.excluded[c] for c in columns},
            where=(table.c.tenant_id == stmt.excluded.tenant_id) if scoped else None,
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=conflict_key(session, table, key), index_where=index_where)
    # preserve_rowcount: SQLAlchemy keeps an INSERT's rowcount only when asked (psycopg's is -1 otherwise).
    return int(session.execute(stmt.execution_options(preserve_rowcount=True)).rowcount or 0)  # type: ignore[attr-defined]


@compiles(ForeignKeyConstraint, "sqlite")
def _sqlite_tenant_key(constraint: ForeignKeyConstraint, compiler: Any, **kw: Any) -> str:
    """On SQLite a ``SET NULL (<columns>)`` tenant key is made on its own columns alone.

    SQLite has no column list after ``SET NULL`` and would clear ``tenant_id``
    too (refused: it is NOT NULL); its tables are never distributed, and ids
    are unique across tenants, so the key on the id alone keeps the meaning.
    """
    ondelete = constraint.ondelete or ""
    if not ondelete.upper().startswith("SET NULL (") or constraint.column_keys[:1] != ["tenant_id"]:
        return compiler.visit_foreign_key_constraint(constraint, **kw)  # type: ignore[no-any-return]
    local = constraint.column_keys[1:]
    remote = [e.target_fullname.split(".")[-1] for e in constraint.elements[1:]]
    target = constraint.elements[0].target_fullname.rsplit(".", 1)[0]
    name = f"CONSTRAINT {compiler.preparer.format_constraint(constraint)} " if constraint.name else ""
    return (f"{name}FOREIGN KEY({', '.join(local)}) REFERENCES {target} ({', '.join(remote)}) "
            "ON DELETE SET NULL")


def _sqlite_rowid_key(constraint: PrimaryKeyConstraint) -> Any:
    """The id of a ``(tenant_id, id)`` key whose id comes from a sequence, else None."""
    cols = list(constraint.columns)
    if len(cols) == 2 and cols[0].name == "tenant_id" and cols[1].autoincrement is True:
        return cols[1]
    return None


@compiles(CreateColumn, "sqlite")
def _sqlite_sequence_column(create: CreateColumn, compiler: Any, **kw: Any) -> str:
    """An id whose table key is ``(tenant_id, id)`` is SQLite's ``INTEGER PRIMARY KEY`` (see below)."""
    column = create.element
    if column.autoincrement is True and column.table is not None and len(column.table.primary_key.columns) > 1:
        column.autoincrement = "auto"
        try:
            return compiler.visit_create_column(create, **kw)  # type: ignore[no-any-return]
        finally:
            column.autoincrement = True
    return compiler.visit_create_column(create, **kw)  # type: ignore[no-any-return]


@compiles(PrimaryKeyConstraint, "sqlite")
def _sqlite_tenant_primary_key(constraint: PrimaryKeyConstraint, compiler: Any, **kw: Any) -> str:
    """On SQLite a ``(tenant_id, id)`` key is ``PRIMARY KEY (id)`` with ``UNIQUE (tenant_id, id)``.

    SQLite only hands out ids for an ``INTEGER PRIMARY KEY`` (the rowid); the
    unique pair lets keys through the tenant point at the table.
    """
    rowid = _sqlite_rowid_key(constraint)
    if rowid is None:
        return compiler.visit_primary_key_constraint(constraint, **kw)  # type: ignore[no-any-return]
    table = constraint.table.name
    return (f"PRIMARY KEY ({compiler.preparer.quote(rowid.name)}), "
            f"CONSTRAINT uq_{table}_tenant_id_{rowid.name} UNIQUE (tenant_id, {compiler.preparer.quote(rowid.name)})")
