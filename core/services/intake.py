"""The assembly line: submissions in, leads out — cleaned, deduplicated, routed, recorded.

Every way in (the API, channel webhooks, CSV imports) ends in :func:`ingest`,
which takes a *batch* of submissions and does each step once per batch:
normalise, find replays (idempotency keys), find duplicates, insert the new
leads with ``ON CONFLICT DO NOTHING`` (the unique indexes on phone and email
decide, not a prior SELECT), route them (hooks asked per batch), then write
touches, stage history, the ownership ledger and one event per kind.

Duplicates inside one batch fold into the first submission; across
transactions the database's unique index makes a racing insert a merge.

Every write is one statement per table per batch, whatever its size, and no
ORM object is made per row: on PostgreSQL an ``INSERT … SELECT FROM
json_to_recordset(:rows)`` (the batch as one JSON parameter), on SQLite the
driver's ``executemany``. On PostgreSQL everything after the leads (touches,
stage history, ledger, the two events) is a single statement of
data-modifying CTEs (:func:`~pelago.core.bulk.write_together`): one round
trip. Plain touches get their ids before the insert, so
each submission knows its touch without trusting the order of ``RETURNING``;
new leads get theirs before routing, so its hooks see them (``LeadInfo.new_id``).
bench/intake_import.py measures the whole line against a bare INSERT.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

from sqlalchemy import Table, select, text, update
from sqlalchemy.orm import Session

from .. import collector, driver
from ..attributes import MAX_KEYS, attribute_errors
from ..bulk import Call, Change, Part, write_rows, write_together
from ..context import HookContext
from ..errors import Conflict
from ..events import emit, emit_call, emitted, snapshot
from ..models import Lead, OwnershipChange, StageChange, Team, Touch, User
from ..ownership import assigned_item
from ..phones import BadPhone, normalise_fast
from ..routing import Decision, LeadInfo, route, take_pointers
from ..snapshots import UserInfo
from ..vetoes import vetoes

LEAD_FIELDS = {"name": 200, "email": 254, "source": 100, "region": 100, "product": 100}
TOUCH_FIELDS = {
    "channel": 100, "source": 100, "utm_source": 200, "utm_medium": 200, "utm_campaign": 200,
    "utm_term": 200, "utm_content": 200, "click_id": 200,
}
# The tables the line writes with Core statements (no ORM object per row).
LEADS = cast(Table, Lead.__table__)
TOUCHES = cast(Table, Touch.__table__)
STAGES = cast(Table, StageChange.__table__)
LEDGER = cast(Table, OwnershipChange.__table__)
TEAMS = cast(Table, Team.__table__)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
FILLABLE = ("name", "email", "source", "region", "product")


@dataclass
class Submission:
    """One raw submission: lead fields, attribution, the raw payload, an idempotency key."""

    data: Mapping[str, Any]
    touch: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] | None = None
    key: str | None = None
    row: int | None = None  # where it came from (an import's row number), for error reports


@dataclass
class Outcome:
    """What became of one submission. ``status``: created, merged, replayed or invalid."""

    status: str
    lead_id: int | None = None
    touch_id: int | None = None
    matched_on: str | None = None
    errors: dict[str, list[str]] | None = None
    decision: Decision | None = None
    #: a created lead's columns as inserted (PostgreSQL), so a caller answering with it reads nothing
    row: Mapping[str, Any] | None = None


@dataclass
class _Row:
    index: int
    sub: Submission
    values: dict[str, Any]
    dedupe: tuple[str, str]  # ("phone", e164) or ("email", address)
    outcome: Outcome
    new_id: int | None = None  # reserved before routing for a lead to create (LeadInfo.new_id)


def clean(ctx: HookContext, data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Normalised lead fields and field errors: phone to E.164, email lowercased, lengths."""
    return clean_fields(data, ctx.tenant.default_region)


def clean_fields(data: Mapping[str, Any], region: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """:func:`clean` with the tenant's default phone region given: what the webhook checks before
    it stores a submission, with no tenant context made."""
    out: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    phone = data.get("phone")
    if phone not in (None, ""):
        try:
            out["phone"] = normalise_fast(str(phone), region)
        except BadPhone as exc:
            errors["phone"] = [str(exc)]
    for name, limit in LEAD_FIELDS.items():
        value = data.get(name)
        if value is None:
            continue
        value = str(value).strip()
        if name == "email":
            value = value.lower()
            if value and not EMAIL.match(value):
                errors["email"] = ["not a valid email address"]
        if len(value) > limit:
            errors[name] = [f"longer than {limit} characters"]
        out[name] = value or None
    if not out.get("phone") and not out.get("email") and "phone" not in errors and "email" not in errors:
        errors["phone"] = ["phone or email is required"]
    attributes = data.get("attributes")
    if attributes is not None and not isinstance(attributes, Mapping):
        errors["attributes"] = ["must be an object"]
    out["attributes"] = dict(attributes or {}) if isinstance(attributes, Mapping) else {}
    if out["attributes"] and (problems := attribute_errors(out["attributes"])):
        errors["attributes"] = problems
    for name in ("team_id", "owner_id"):
        if data.get(name) is not None:
            out[name] = data[name]
    return out, errors


def clean_touch(touch: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    out: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, value in touch.items():  # the submission's keys, usually fewer than the fields
        limit = TOUCH_FIELDS.get(name)
        if limit is None or value in (None, ""):
            continue
        value = str(value).strip()
        if len(value) > limit:
            errors[name] = [f"longer than {limit} characters"]
        out[name] = value
    return out, errors


def ingest(
    ctx: HookContext, submissions: Sequence[Submission], *, routing: bool = True,
    strict_owner: bool = False, origin: Mapping[str, Any] | None = None,
) -> list[Outcome]:
    """Take one batch of submissions through the whole line; see the module docstring.

    ``routing=False`` leaves new leads unowned (creating straight into a
    pool); the tenant's auto-routing switch is the core plugin's to read. Invalid
    submissions come back with their field errors and change nothing. A
    caller-given ``owner_id`` that a plugin vetoes raises
    :class:`~pelago.core.errors.Vetoed` when ``strict_owner`` (the API), and
    otherwise leaves the lead unowned with the reason in the ledger.
    ``origin`` (e.g. ``{"import_id": 7}``) is added to each ``lead_created``
    item, so plugins can tell where a batch came from.
    """
    with collector.paused():
        try:
            return _ingest(ctx, submissions, routing, strict_owner, origin)
        finally:
            ctx.session.info.pop(DRAWN, None)  # ids drawn ahead serve this batch only


def _ingest(
    ctx: HookContext, submissions: Sequence[Submission], routing: bool, strict_owner: bool,
    origin: Mapping[str, Any] | None,
) -> list[Outcome]:
    now = ctx.now()
    outcomes: list[Outcome] = []
    rows: list[_Row] = []
    for i, sub in enumerate(submissions):
        values, errors = clean(ctx, sub.data)
        touch, touch_errors = clean_touch(sub.touch)
        errors.update(touch_errors)
        outcome = Outcome("invalid", errors=errors) if errors else Outcome("created")
        outcomes.append(outcome)
        if errors:
            continue
        values["_touch"] = touch
        dedupe = ("phone", str(values["phone"])) if values.get("phone") else ("email", str(values["email"]))
        rows.append(_Row(i, sub, values, dedupe, outcome))
    if not rows:
        return outcomes

    # Replays: a key already stored (or seen earlier in this batch) returns the first result.
    keys = [r.sub.key for r in rows if r.sub.key]
    seen: dict[str, tuple[int, int, bool]] = {}
    looked_up: dict[tuple[str, str], int] | None = None
    if _postgres(ctx.session):
        # One round trip for replays, duplicates and (a single submission) its new ids, after the
        # email locks: see _pg_lookups.
        lock_emails(ctx, [r.values["email"] for r in rows if r.values.get("email")])
        single = len(rows) == 1
        stored, looked_up, drawn = _pg_lookups(
            ctx, keys, [r.dedupe for r in rows], lead_ids=int(single), touch_ids=int(single and not keys))
        ctx.session.info[DRAWN] = drawn
    else:
        stored = _stored_touches(ctx, keys) if keys else []
    for tid, lid, merged, key in stored:
        seen[str(key)] = (tid, lid, merged)
    fresh: list[_Row] = []
    batch_keys: dict[str, _Row] = {}
    for r in rows:
        key = r.sub.key or ""
        if key and key in seen:
            tid, lid, merged = seen[key]
            r.outcome.status, r.outcome.lead_id, r.outcome.touch_id = "replayed", lid, tid
            r.outcome.matched_on = "idempotency_key"
        elif key and key in batch_keys:
            r.outcome.status = "replayed"
            r.outcome.matched_on = "idempotency_key"
            r.values["_same_as"] = batch_keys[key]  # ids filled in once the first is stored
        else:
            if key:
                batch_keys[key] = r
            fresh.append(r)

    # Duplicates: the first of a phone/email in the batch leads; known leads are merged into.
    # An email-only row matches the oldest known lead with that email; failing one, it follows
    # an earlier row of the batch with that email and a phone: as if they came one by one.
    primary: dict[tuple[str, str], _Row] = {}
    by_email: dict[str, _Row] = {}
    followers: list[tuple[_Row, _Row]] = []
    by_email_only: list[_Row] = []
    for r in fresh:
        leader = primary.get(r.dedupe)
        if leader is not None:
            followers.append((r, leader))
        elif r.dedupe[0] == "email" and r.dedupe[1] in by_email:
            by_email_only.append(r)
        else:
            primary[r.dedupe] = r
            email = r.values.get("email")
            if email:
                by_email.setdefault(email, r)
    if looked_up is None:  # SQLite: one writer at a time, no locks to take first
        existing = _existing_leads(ctx, list(primary) + [r.dedupe for r in by_email_only])
    else:
        existing = looked_up  # every row's key was looked up: a superset of these
    to_create = [r for d, r in primary.items() if d not in existing]
    for r in [*primary.values(), *by_email_only]:
        if r.dedupe in existing:
            r.outcome.status, r.outcome.lead_id, r.outcome.matched_on = "merged", existing[r.dedupe], r.dedupe[0]
    followers += [(r, by_email[r.dedupe[1]]) for r in by_email_only if r.dedupe not in existing]

    # Ids first, so routing's hooks know the leads they place (LeadInfo.new_id) and write once.
    if to_create:
        for r, new_id in zip(to_create, _drawn_ids(ctx.session, "core_lead", len(to_create)), strict=True):
            r.new_id = new_id
    decisions = _decide(ctx, to_create, routing, strict_owner)
    inserted: dict[int, Mapping[str, Any]] = {}
    # A single new lead (the API, a router's batch of one) goes with all its rows in one statement.
    together = len(fresh) == 1 and len(to_create) == 1 and _postgres(ctx.session)
    done = together and _create_one(ctx, to_create[0], decisions, now, origin or {}, inserted)
    if together:
        created = {to_create[0].dedupe: cast(int, to_create[0].new_id)} if done else {}
    else:
        created = _insert_leads(ctx, to_create, decisions, now, inserted)
    late = [r for r in to_create if r.dedupe not in created]  # lost a race: merge instead
    if late:
        found = _existing_leads(ctx, [r.dedupe for r in late])
        for r in late:
            if r.dedupe not in found:  # pragma: no cover - the conflicting row must be visible now
                raise Conflict("the duplicate lead could not be read; retry")
            r.outcome.status, r.outcome.lead_id, r.outcome.matched_on = "merged", found[r.dedupe], r.dedupe[0]
    for r in to_create:
        if r.dedupe in created:
            r.outcome.lead_id = created[r.dedupe]
            r.outcome.row = inserted.get(r.outcome.lead_id)
    for r, leader in followers:
        r.outcome.status, r.outcome.lead_id, r.outcome.matched_on = "merged", leader.outcome.lead_id, r.dedupe[0]

    merged_rows = [r for r in fresh if r.outcome.status == "merged"]
    filled = _fill_merged(ctx, merged_rows, now)
    new = [r for r in to_create if r.outcome.status == "created"]
    if not done:
        _write_rest(ctx, fresh, new, decisions, now, origin or {})
    for r in rows:
        same = r.values.get("_same_as")
        if same is not None:
            r.outcome.lead_id, r.outcome.touch_id = same.outcome.lead_id, same.outcome.touch_id
    if merged_rows:
        ctx.emit("lead_merged", [
            {"lead_id": r.outcome.lead_id, "touch_id": r.outcome.touch_id, "matched_on": r.outcome.matched_on,
             "filled": filled.get(id(r), [])}
            for r in merged_rows
        ])
    return outcomes


EMAIL_BUCKETS = 64


def lock_emails(ctx: HookContext, emails: list[str]) -> None:
    """Serialise intake per email (PostgreSQL): the match of an email-only submission cannot race.

    An email-only submission merges into a lead with that email, which may
    have a phone; no unique index can say "one email among leads without a
    phone, unless one with a phone has it". So every batch that carries an
    email takes a transaction-level advisory lock on the email's bucket (one
    of 64 per tenant, in bucket order: no deadlocks) before it looks for
    duplicates, and holds it to commit: a submission then sees every lead a
    concurrent one made with its email. Bounded: at most 64 locks per
    transaction, one statement per batch. SQLite runs one writer at a time.
    Every other writer of a lead's email (``update_lead``) takes the same
    lock, or intake could miss the email it is setting.
    """
    if not emails or not _postgres(ctx.session):
        return
    buckets = sorted({zlib.crc32(e.encode()) % EMAIL_BUCKETS for e in emails})
    ctx.session.execute(
        text("SELECT pg_advisory_xact_lock(:space, b) FROM unnest(CAST(:buckets AS int[])) AS b ORDER BY b"),
        {"space": _lock_space(ctx.tenant.id), "buckets": buckets},
    )


def _lock_space(tenant_id: int) -> int:
    """The first key of the tenant's email locks: a 31-bit number of its own."""
    return (zlib.crc32(f"pelago.email:{tenant_id}".encode()) & 0x7FFFFFFF)


def _existing_leads(ctx: HookContext, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Lead ids of the given phones and emails. An email also matches a lead that has a phone
    (the oldest such lead)."""
    found: dict[tuple[str, str], int] = {}
    phones = [v for k, v in keys if k == "phone"]
    emails = [v for k, v in keys if k == "email"]
    if phones:
        for lid, phone in _lookup(ctx, "id", "core_lead", "phone", phones):
            found[("phone", str(phone))] = lid
    if emails:
        for lid, email in _lookup(ctx, "min(id)", "core_lead", "email", emails, group=True):
            found[("email", str(email))] = lid
    return found


def _pg_lookups(
    ctx: HookContext, keys: list[str], dedupes: list[tuple[str, str]], lead_ids: int = 0, touch_ids: int = 0,
) -> tuple[list[Any], dict[tuple[str, str], int], dict[str, list[int]]]:
    """PostgreSQL: :func:`_stored_touches`, :func:`_existing_leads` and fresh ids in one statement.

    A batch's replays and duplicates are read in one round trip instead of
    three, after :func:`lock_emails` (so a replayed submission's email is
    locked too: harmless, as the locks are per bucket and taken in order).
    ``dedupes`` may hold keys the caller then does not need (the replays'): it
    only reads the answers it asks for. Each part is the statement
    :func:`_lookup` would send, joined by ``UNION ALL`` and told apart by its
    first column.

    ``lead_ids``, ``touch_ids``: draw that many ids of ``core_lead`` and
    ``core_touch`` in the same round trip (:func:`_drawn_ids` hands them out),
    for a single submission that may create its lead (the API): one round
    trip fewer per request. An id drawn and not used (a replay, a duplicate)
    is a gap in the sequence, as a rolled-back insert leaves. A lookup of one
    value compares with ``=`` and is prepared (the unique index decides
    whatever the statistics); several values are an array constant, not
    prepared (see :func:`_lookup`).
    """
    parts: list[str] = []
    params: dict[str, Any] = {"tenant": ctx.tenant.id}
    phones = sorted({v for k, v in dedupes if k == "phone"})
    emails = sorted({v for k, v in dedupes if k == "email"})
    one = all(len(v) <= 1 for v in (keys, phones, emails))
    if keys:
        parts.append(_lookup_sql("0, id, lead_id, merged", "core_touch", "idempotency_key", "keys", one=one))
        params["keys"] = keys[0] if one else _pg_array(keys)
    if phones:
        parts.append(_lookup_sql("1, id, NULL::bigint, NULL::boolean", "core_lead", "phone", "phones", one=one))
        params["phones"] = phones[0] if one else _pg_array(phones)
    if emails:
        parts.append(_lookup_sql("2, min(id), NULL::bigint, NULL::boolean", "core_lead", "email", "emails",
                                 group=True, one=one))
        params["emails"] = emails[0] if one else _pg_array(emails)
    for kind, table, n in ((3, "core_lead", lead_ids), (4, "core_touch", touch_ids)):
        if n:
            parts.append(f"(SELECT {kind}, nextval({_SEQUENCES[table]}::regclass), NULL::bigint, NULL::boolean, "
                         f"NULL::text FROM generate_series(1, {int(n)}))")
    stored: list[Any] = []
    found: dict[tuple[str, str], int] = {}
    drawn: dict[str, list[int]] = {"core_lead": [], "core_touch": []}
    if not parts:
        return stored, found, drawn
    # psycopg's cursor, for ``prepare`` (errors translated into SQLAlchemy's: core/driver.py)
    for kind, first, lead_id, merged, value in driver.fetch_all(
            ctx.session, " UNION ALL ".join(parts), params, prepare=None if one else False):
        if kind == 0:
            stored.append((first, lead_id, merged, value))
        elif kind < 3:
            found[("phone" if kind == 1 else "email", str(value))] = first
        else:
            drawn["core_lead" if kind == 3 else "core_touch"].append(int(first))
    for ids in drawn.values():
        ids.sort()
    return stored, found, drawn


#: ``session.info`` key: ids drawn ahead by :func:`_pg_lookups`, by table, for :func:`_drawn_ids`
DRAWN = "pelago_drawn_ids"
#: the sequences of the tables whose ids are drawn ahead, as SQL literals
_SEQUENCES = {table: f"(SELECT pg_get_serial_sequence('{table}', 'id'))" for table in ("core_lead", "core_touch")}


def _drawn_ids(session: Session, table: str, n: int) -> list[int]:
    """``n`` fresh ids of ``table``: the ones :func:`_pg_lookups` drew for this batch if they are
    exactly as many, else :func:`_next_ids`. Each drawn id is handed out once."""
    drawn = (session.info.get(DRAWN) or {}).get(table)
    if drawn and len(drawn) == n:
        out = list(drawn)
        drawn.clear()
        return out
    return _next_ids(session, table, n)


def _lookup_sql(picks: str, table: str, column: str, name: str, group: bool = False, one: bool = False) -> str:
    """One part of :func:`_pg_lookups`: :func:`_lookup`'s statement, the array a parameter ``name``
    (``one``: a single value, compared with ``=``)."""
    grouping = f" GROUP BY {column}" if group else ""
    match = f"= %({name})s::text" if one else f"= ANY(%({name})s::text[])"
    return (f"(SELECT {picks}, {column} FROM {table} WHERE tenant_id = %(tenant)s AND {column} IS NOT NULL "
            f"AND {column} {match}{grouping})")


def _pg_array(values: Sequence[str]) -> str:
    """``values`` as one untyped PostgreSQL array literal (see :func:`_lookup`)."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _stored_touches(ctx: HookContext, keys: list[str]) -> list[Any]:
    """``(id, lead_id, merged, idempotency_key)`` of the touches already stored under ``keys``."""
    return _lookup(ctx, "id, lead_id, merged", "core_touch", "idempotency_key", keys)


def _lookup(
    ctx: HookContext, picks: str, table: str, column: str, values: list[str], group: bool = False,
) -> list[Any]:
    """``picks`` and ``column`` of the tenant's rows of ``table`` whose ``column`` is one of
    ``values`` (``group``: grouped by ``column``, ``picks`` aggregating). Raw SQL, one
    statement per batch (per 5,000 values on SQLite), so the tenant is spelled out.

    PostgreSQL: ``column = ANY(array)`` with the array a constant of the plan,
    so that whichever plan the statistics lead to stays cheap: with them, one
    probe of the ``(tenant_id, column)`` unique index per value; without them
    (a new tenant, a table not analysed yet) the planner may read all the
    tenant's rows once, but then tests each with a hash lookup into the array
    rather than a walk along it. So the statement is never prepared (a
    prepared plan would see a parameter, not the array), and the array
    travels as one untyped literal (psycopg adapts a list value by value in
    Python).
    """
    where = f"FROM {table} WHERE tenant_id = %(tenant)s AND {column} IS NOT NULL AND {column} "
    grouping = f" GROUP BY {column}" if group else ""
    if _postgres(ctx.session):
        sql = f"SELECT {picks}, {column} {where}= ANY(%(values)s::text[]){grouping}"
        return driver.fetch_all(ctx.session, sql, {"values": _pg_array(values), "tenant": ctx.tenant.id},
                                prepare=False)  # never prepared: see above
    conn = ctx.session.connection()
    found: list[Any] = []
    for chunk in _chunks(values, 5000):
        sql = f"SELECT {picks}, {column} {where.replace('%(tenant)s', '?')}IN ({', '.join('?' * len(chunk))}){grouping}"
        found += conn.exec_driver_sql(sql, (ctx.tenant.id, *chunk)).all()
    return found


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[k:k + size] for k in range(0, len(items), size)]


def _decide(
    ctx: HookContext, rows: list[_Row], routing: bool | None, strict_owner: bool
) -> dict[int, Decision]:
    """Owner and team of each lead to create, keyed by row index; before the insert, so one write."""
    decisions: dict[int, Decision] = {}
    given = [r for r in rows if r.values.get("owner_id") is not None]
    if given:
        users = {u.id: UserInfo.of(u) for u in ctx.session.scalars(
            select(User).where(User.id.in_({r.values["owner_id"] for r in given}))
        )}
        from ..routing import Assignment

        assignments = [Assignment(_info(r), users[r.values["owner_id"]], "created") for r in given]
        refused = vetoes(ctx, assignments)
        for k, r in enumerate(given):
            user = users[r.values["owner_id"]]
            if k in refused:
                plugin, message = refused[k]
                if strict_owner:
                    from ..errors import Vetoed

                    raise Vetoed(message, plugin)
                decisions[r.index] = Decision(r.values.get("team_id"), None, None, {
                    "owner": {"user_id": None, "reason": f"{message} (vetoed by {plugin})",
                              "vetoed_user_id": user.id, "plugin": plugin},
                })
            else:
                decisions[r.index] = Decision(
                    r.values.get("team_id") or user.team_id, user.id, "caller",
                    {"owner": {"user_id": user.id, "reason": "given by the caller"}},
                )
    rest = [r for r in rows if r.values.get("owner_id") is None]
    if rest and routing:
        for r, d in zip(rest, route(ctx, [_info(r) for r in rest], reason="created"), strict=True):
            decisions[r.index] = d
    return decisions


def _info(r: _Row) -> LeadInfo:
    v = r.values
    return LeadInfo(
        None, v.get("name") or "", v.get("phone"), v.get("email"), v.get("source"), v.get("region"),
        v.get("product"), v["_touch"].get("channel"), v["attributes"], v.get("team_id"), new_id=r.new_id,
    )


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _next_ids(session: Session, table: str, n: int) -> list[int]:
    """``n`` fresh primary keys of ``table``, ascending, for rows about to be inserted.

    PostgreSQL draws them from the column's sequence. SQLite takes the ones
    after the highest id: Pelago's SQLite transactions hold the write lock
    from their first statement (``BEGIN IMMEDIATE``), so nobody else can
    insert meanwhile (and if one did, the insert fails on the primary key).
    """
    if _postgres(session):
        # The sequence is looked up once (a scalar subquery), not once per id: ten times cheaper.
        ids = session.execute(
            text(f"SELECT nextval((SELECT pg_get_serial_sequence('{table}', 'id'))::regclass) "
                 "FROM generate_series(1, :n)"), {"n": n}
        ).scalars().all()
        return sorted(int(i) for i in ids)
    top = session.execute(text(f"SELECT max(id) FROM {table}")).scalar() or 0
    return list(range(top + 1, top + n + 1))


# --- the writes of the line ---------------------------------------------------------------

LEAD_CONFLICT = {"phone": "phone IS NOT NULL", "email": "phone IS NULL AND email IS NOT NULL"}
LEAD_COLUMNS = {
    "id": "bigint", "name": "text", "phone": "text", "email": "text", "source": "text", "region": "text", "product": "text",
    "owner_id": "bigint", "team_id": "bigint", "attributes": "jsonb", "assigned_at": "timestamptz",
}
TOUCH_COLUMNS = {
    "lead_id": "bigint", "idempotency_key": "text", "merged": "boolean", "raw": "jsonb", "channel": "text",
    "source": "text", "utm_source": "text", "utm_medium": "text", "utm_campaign": "text", "utm_term": "text",
    "utm_content": "text", "click_id": "text",
}
LEDGER_COLUMNS = {"lead_id": "bigint", "to_user_id": "bigint", "to_team_id": "bigint", "rule": "text",
                  "detail": "jsonb"}


def _insert_leads(
    ctx: HookContext, rows: list[_Row], decisions: dict[int, Decision], now: Any,
    inserted: dict[int, Mapping[str, Any]] | None = None,
) -> dict[tuple[str, str], int]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING, one statement per kind of key.

    ``inserted`` (PostgreSQL, a batch of one): filled with the lead's columns as
    written, from the same RETURNING.
    """
    if not rows:
        return {}
    created: dict[tuple[str, str], int] = {}
    by_kind: dict[str, list[_Row]] = {"phone": [], "email": []}
    for r in rows:
        by_kind[r.dedupe[0]].append(r)
    for kind, group in by_kind.items():
        if not group:
            continue
        group.sort(key=lambda r: r.dedupe[1])  # one key order for every writer: no deadlocks
        whole = inserted is not None and len(rows) == 1 and _postgres(ctx.session)
        part = _lead_part(ctx, kind, group, decisions, now, ", *" if whole else "")
        for found in write_rows(ctx.session, LEADS, part.columns, part.rows, part.fixed, part.tail):
            created[(kind, str(found[1]))] = found[0]
            if inserted is not None and whole:
                inserted[found[0]] = dict(zip(found._fields[2:], found[2:], strict=True))
    return created


def _lead_part(
    ctx: HookContext, kind: str, group: list[_Row], decisions: dict[int, Decision], now: Any, returning: str = "",
) -> Part:
    """The insert of ``group``'s leads (one kind of key), ``ON CONFLICT DO NOTHING RETURNING id, <key>``
    and ``returning``."""
    fixed = {
        "tenant_id": ("bigint", ctx.tenant.id), "stage": ("text", "new"), "is_customer": ("boolean", False),
        "locked": ("boolean", False), "created_at": ("timestamptz", now), "updated_at": ("timestamptz", now),
        "stage_changed_at": ("timestamptz", now), "version": ("integer", 1),
    }
    stamp = now.isoformat() if _postgres(ctx.session) else now  # PostgreSQL reads it from JSON
    leads = []
    for r in group:
        v = r.values
        d = decisions.get(r.index)
        owner = d.owner_id if d else None
        leads.append((
            r.new_id, v.get("name") or "", v.get("phone"), v.get("email"), v.get("source") or v["_touch"].get("source"),
            v.get("region"), v.get("product"), owner,
            d.team_id if d and d.team_id is not None else v.get("team_id"), v["attributes"],
            None if owner is None else stamp,
        ))
    tail = f"ON CONFLICT (tenant_id, {kind}) WHERE {LEAD_CONFLICT[kind]} DO NOTHING RETURNING id, {kind}{returning}"
    return Part(LEADS, LEAD_COLUMNS, leads, fixed, tail)


def _create_one(
    ctx: HookContext, r: _Row, decisions: dict[int, Decision], now: Any, origin: Mapping[str, Any],
    inserted: dict[int, Mapping[str, Any]],
) -> bool:
    """A single new lead and everything that hangs on it in one statement (PostgreSQL); ``False`` when a
    duplicate won the race (then nothing but the round-robin pointer was written).

    The lead's insert gates the rest (:func:`~pelago.core.bulk.write_together`'s
    ``gated``): while routing holds the team's row, one round trip, not two.
    """
    r.outcome.lead_id = r.new_id  # the touch, stage and ledger rows name it
    gate = _lead_part(ctx, r.dedupe[0], [r], decisions, now, ", to_json(core_lead.*)")
    row = _write_rest(ctx, [r], [r], decisions, now, origin, gate)
    if row is None:
        r.outcome.lead_id = r.outcome.touch_id = r.outcome.decision = None
        return False
    inserted[cast(int, r.new_id)] = _lead_columns(row)
    return True


def _lead_columns(found: Mapping[str, Any]) -> dict[str, Any]:
    """A lead's row from its JSON form (``to_json``) back to Python values: timestamps as aware datetimes."""
    out = dict(found)
    for name in _LEAD_TIMES:
        if out.get(name) is not None:
            out[name] = datetime.fromisoformat(out[name]).astimezone(timezone.utc)
    return out


_LEAD_TIMES = tuple(c.name for c in LEADS.c if getattr(c.type, "timezone", False))


def _fill_merged(ctx: HookContext, rows: list[_Row], now: Any) -> dict[int, list[str]]:
    """Fill a known lead's empty fields from the submission; never overwrite what is there.

    The submission's attributes are added the same way: keys the lead does
    not have yet, while it has fewer than :data:`~pelago.core.attributes.MAX_KEYS`;
    a key it has keeps its value (the touch's ``raw`` keeps the submission
    whole).
    """
    if not rows:
        return {}
    ids = sorted({r.outcome.lead_id for r in rows if r.outcome.lead_id is not None})
    current = {
        lead.id: lead
        for lead in ctx.session.execute(
            select(Lead.id, Lead.attributes, *(getattr(Lead, f) for f in FILLABLE)).where(Lead.id.in_(ids))
            .order_by(Lead.id).with_for_update()
        )
    }
    changes: dict[int, dict[str, Any]] = {}
    filled: dict[int, list[str]] = {}
    for r in rows:
        lead = current[r.outcome.lead_id]  # type: ignore[index]
        pending = changes.setdefault(lead.id, {})
        names = [
            f for f in FILLABLE
            if r.values.get(f) and not getattr(lead, f) and f not in pending
        ]
        for f in names:
            pending[f] = r.values[f]
        attributes = pending.get("attributes", lead.attributes or {})
        new_keys = [k for k in r.values["attributes"] if k not in attributes]
        if new_keys and len(attributes) < MAX_KEYS:
            added = new_keys[:MAX_KEYS - len(attributes)]
            pending["attributes"] = {**attributes, **{k: r.values["attributes"][k] for k in added}}
            names.append("attributes")
        filled[id(r)] = names
    for lead_id, values in changes.items():
        if values:
            ctx.session.execute(
                update(Lead).where(Lead.id == lead_id)
                .values(**values, updated_at=now, version=Lead.version + 1)
                .execution_options(synchronize_session=False)
            )
    return filled


def _write_rest(
    ctx: HookContext, fresh: list[_Row], new: list[_Row], decisions: dict[int, Decision], now: Any,
    origin: Mapping[str, Any], gate: Part | None = None,
) -> Mapping[str, Any] | None:
    """Touches, then stage history, the ownership ledger and the events of the leads created.

    On PostgreSQL all of it is one statement (:func:`~pelago.core.bulk.write_together`:
    the inserts as data-modifying CTEs, the two events as ``core_emit``
    calls), so one round trip whatever the batch; on SQLite one
    ``executemany`` per table and :func:`~pelago.core.events.emit`.
    ``gate`` (PostgreSQL, :func:`_create_one`): the one lead's insert, first in
    the statement; the rest is written only if it inserted. Returns the lead's
    columns (its RETURNING's last value), or ``None`` when it did not.
    """
    parts: list[Part] = [gate] if gate is not None else []
    keyed = _touch_parts(ctx, fresh, now, parts)
    keyed_part = len(parts) - 1  # the keyed touches are the last part so far (if any)
    created_items, assigned_items = _created_parts(ctx, new, decisions, now, origin, parts)
    if _postgres(ctx.session):
        calls: list[Call] = []
        subscribed: list[bool] = []
        for name, items in (("lead_created", created_items), ("lead_assigned", assigned_items)):
            if items:
                call, has = emit_call(ctx, name, items, f"e{len(calls)}", plain=True)
                calls.append(call)
                subscribed.append(has)
        returned, event_ids = write_together(ctx.session, parts, calls, pointer_updates(ctx),
                                             gated=gate is not None)
        if gate is not None and not returned[0]:
            return None  # a duplicate won: nothing of this was written
        for event_id, has in zip(event_ids, subscribed, strict=True):
            if has:
                emitted(ctx, int(event_id))
    else:
        returned, _ = write_together(ctx.session, parts)
        emit(ctx, "lead_created", created_items, plain=True)
        emit(ctx, "lead_assigned", assigned_items, plain=True)
    if keyed:
        by_key = {str(r.sub.key): r for r in keyed}
        for tid, key in returned[keyed_part]:
            by_key.pop(str(key)).outcome.touch_id = tid
        if by_key:
            raise Conflict(
                "a request with this idempotency key is being processed; retry it",
                {"idempotency_key": sorted(by_key)[:10]},
            )
    return returned[0][0][-1] if gate is not None else None


def _touch_parts(ctx: HookContext, rows: list[_Row], now: Any, parts: list[Part]) -> list[_Row]:
    """One touch per stored submission, added to ``parts`` (plain ones, then keyed ones); returns
    the keyed rows.

    Plain touches get their ids first, so each submission knows its touch
    without trusting the order of RETURNING; keyed ones come back by key,
    and a key that won a race elsewhere is a 409 for the batch. Plain ones
    go first: on SQLite their ids are the ones after the highest, which
    the keyed ones (numbered by SQLite) would otherwise take.
    """
    fixed = {"tenant_id": ("bigint", ctx.tenant.id), "received_at": ("timestamptz", now)}
    plain = [r for r in rows if not r.sub.key]
    if plain:
        ids = _drawn_ids(ctx.session, "core_touch", len(plain))
        for r, tid in zip(plain, ids, strict=True):
            r.outcome.touch_id = tid
        parts.append(Part(TOUCHES, {**TOUCH_COLUMNS, "id": "bigint"},
                          [(*_touch_row(r), tid) for r, tid in zip(plain, ids, strict=True)], fixed))
    keyed = sorted((r for r in rows if r.sub.key), key=lambda r: str(r.sub.key))  # no deadlocks
    if keyed:
        tail = ("ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING "
                "RETURNING id, idempotency_key")
        parts.append(Part(TOUCHES, TOUCH_COLUMNS, [_touch_row(r) for r in keyed], fixed, tail))
    return keyed


_SCALARS = (str, int, bool, type(None))


def _touch_row(r: _Row) -> tuple[Any, ...]:
    """The touch of one submission, in ``TOUCH_COLUMNS`` order; ``raw`` as received, JSON-ready."""
    touch = r.values["_touch"]
    raw = r.sub.raw if r.sub.raw is not None else r.sub.data
    if type(raw) is not dict or not all(type(k) is str and type(v) in _SCALARS for k, v in raw.items()):
        raw = snapshot(dict(raw))  # a flat dict of text and numbers is JSON-ready as it is
    return (
        r.outcome.lead_id, r.sub.key, r.outcome.status == "merged", raw, touch.get("channel"),
        touch.get("source") or r.values.get("source"), touch.get("utm_source"), touch.get("utm_medium"),
        touch.get("utm_campaign"), touch.get("utm_term"), touch.get("utm_content"), touch.get("click_id"),
    )


def pointer_updates(ctx: HookContext) -> list[Change]:
    """The round-robin pointers routing left to write (PostgreSQL), for :func:`~pelago.core.bulk.write_together`.

    None in a savepoint: there they stay pending for the outer transaction.
    """
    if ctx.session.in_nested_transaction():
        return []
    pending = take_pointers(ctx.session)
    if not pending:
        return []
    return [Change(TEAMS, {"tenant_id": "bigint", "id": "bigint"}, {"rr_pointer": "bigint"}, pending)]


def _created_parts(
    ctx: HookContext, rows: list[_Row], decisions: dict[int, Decision], now: Any, origin: Mapping[str, Any],
    parts: list[Part],
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Stage history and the ownership ledger of the leads this batch created, added to ``parts``;
    returns the items of their ``lead_created`` and ``lead_assigned`` events."""
    if not rows:
        return [], []
    actor = ctx.actor.user_id if ctx.actor else None
    parts.append(Part(STAGES, {"lead_id": "bigint"}, [(r.outcome.lead_id,) for r in rows], {
        "tenant_id": ("bigint", ctx.tenant.id), "new": ("text", "new"), "actor_id": ("bigint", actor),
        "at": ("timestamptz", now),
    }))
    ledger: list[tuple[Any, ...]] = []
    created_items = []
    assigned_items: list[Any] = []
    created_at = now.isoformat()  # what the event's snapshot would make of it
    origin = snapshot(dict(origin))  # once: the items are then plain values (emit_call's ``plain``)
    for r in rows:
        d = decisions.get(r.index)
        r.outcome.decision = d
        v = r.values
        team_id = d.team_id if d and d.team_id is not None else v.get("team_id")
        owner = d.owner_id if d else None
        created_items.append({
            "lead_id": r.outcome.lead_id, "name": v.get("name") or "", "phone": v.get("phone"),
            "email": v.get("email"), "source": v.get("source") or v["_touch"].get("source"),
            "stage": "new", "owner_id": owner, "team_id": team_id, "is_customer": False, "created_at": created_at,
            **origin,
        })
        if d is None:
            continue
        ledger.append((r.outcome.lead_id, owner, team_id, d.rule, d.explanation))
        if owner is not None:
            assigned_items.append(assigned_item(cast(int, r.outcome.lead_id), None, owner, team_id, "created", d.rule))
    parts.append(Part(LEDGER, LEDGER_COLUMNS, ledger, {
        "tenant_id": ("bigint", ctx.tenant.id), "reason": ("text", "created"), "note": ("text", ""),
        "actor_id": ("bigint", actor), "at": ("timestamptz", now),
    }))
    return created_items, assigned_items
