"""The assembly line: submissions in, leads out — cleaned, deduplicated, routed, recorded.

Every way in (the API, channel webhooks, CSV imports) ends in :func:`ingest`,
which takes a *batch* of submissions and does each step once per batch:
normalise, find replays (idempotency keys), find duplicates, insert the new
leads with ``ON CONFLICT DO NOTHING`` (the unique indexes on phone and email
decide, not a prior SELECT), route them (hooks asked per batch), then write
touches, stage history, the ownership ledger and one event per kind.

Duplicates inside one batch fold into the first submission; across
transactions the database's unique index makes a racing insert a merge.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, text, update

from ..context import HookContext
from ..errors import Conflict
from ..events import snapshot
from ..models import Lead, OwnershipChange, StageChange, Touch, User
from ..phones import BadPhone, normalise_fast
from ..routing import Decision, LeadInfo, route
from ..vetoes import vetoes

LEAD_FIELDS = {"name": 200, "email": 254, "source": 100, "region": 100, "product": 100}
TOUCH_FIELDS = {
    "channel": 100, "source": 100, "utm_source": 200, "utm_medium": 200, "utm_campaign": 200,
    "utm_term": 200, "utm_content": 200, "click_id": 200,
}
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


@dataclass
class _Row:
    index: int
    sub: Submission
    values: dict[str, Any]
    dedupe: tuple[str, str]  # ("phone", e164) or ("email", address)
    outcome: Outcome


def clean(ctx: HookContext, data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Normalised lead fields and field errors: phone to E.164, email lowercased, lengths."""
    out: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    phone = data.get("phone")
    if phone not in (None, ""):
        try:
            out["phone"] = normalise_fast(str(phone), ctx.tenant.default_region)
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
    for name in ("team_id", "owner_id"):
        if data.get(name) is not None:
            out[name] = data[name]
    return out, errors


def clean_touch(touch: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    out: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, limit in TOUCH_FIELDS.items():
        value = touch.get(name)
        if value in (None, ""):
            continue
        value = str(value).strip()
        if len(value) > limit:
            errors[name] = [f"longer than {limit} characters"]
        out[name] = value
    return out, errors


def ingest(
    ctx: HookContext, submissions: Sequence[Submission], *, routing: bool = True,
    strict_owner: bool = False,
) -> list[Outcome]:
    """Take one batch of submissions through the whole line; see the module docstring.

    ``routing=False`` leaves new leads unowned (creating straight into a
    pool); the tenant's auto-routing switch is the core plugin's to read. Invalid
    submissions come back with their field errors and change nothing. A
    caller-given ``owner_id`` that a plugin vetoes raises
    :class:`~pelago.core.errors.Vetoed` when ``strict_owner`` (the API), and
    otherwise leaves the lead unowned with the reason in the ledger.
    """
    session = ctx.session
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
    if keys:
        for tid, lid, merged, key in session.execute(
            select(Touch.id, Touch.lead_id, Touch.merged, Touch.idempotency_key)
            .where(Touch.idempotency_key.in_(keys))
        ):
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
    primary: dict[tuple[str, str], _Row] = {}
    followers: list[_Row] = []
    for r in fresh:
        if r.dedupe in primary:
            followers.append(r)
        else:
            primary[r.dedupe] = r
    existing = _existing_leads(ctx, list(primary))
    to_create = [r for d, r in primary.items() if d not in existing]
    for d, r in primary.items():
        if d in existing:
            r.outcome.status, r.outcome.lead_id, r.outcome.matched_on = "merged", existing[d], d[0]

    decisions = _decide(ctx, to_create, routing, strict_owner)
    created = _insert_leads(ctx, to_create, decisions, now)
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
    for r in followers:
        lead_row = primary[r.dedupe]
        r.outcome.status, r.outcome.lead_id, r.outcome.matched_on = "merged", lead_row.outcome.lead_id, r.dedupe[0]

    merged_rows = [r for r in fresh if r.outcome.status == "merged"]
    filled = _fill_merged(ctx, merged_rows, now)
    _insert_touches(ctx, fresh, now)
    for r in rows:
        same = r.values.get("_same_as")
        if same is not None:
            r.outcome.lead_id, r.outcome.touch_id = same.outcome.lead_id, same.outcome.touch_id

    new = [r for r in to_create if r.outcome.status == "created"]
    if new:
        _record_created(ctx, new, decisions, now)
    if merged_rows:
        ctx.emit("lead_merged", [
            {"lead_id": r.outcome.lead_id, "touch_id": r.outcome.touch_id, "matched_on": r.outcome.matched_on,
             "filled": filled.get(id(r), [])}
            for r in merged_rows
        ])
    return outcomes


def _existing_leads(ctx: HookContext, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Lead ids of the given phones and emails. An email also matches a lead that has a phone."""
    found: dict[tuple[str, str], int] = {}
    phones = [v for k, v in keys if k == "phone"]
    emails = [v for k, v in keys if k == "email"]
    for chunk in _chunks(phones, 5000):
        for lid, phone in ctx.session.execute(select(Lead.id, Lead.phone).where(Lead.phone.in_(chunk))):
            found[("phone", str(phone))] = lid
    for chunk in _chunks(emails, 5000):
        rows = ctx.session.execute(
            select(Lead.id, Lead.email).where(Lead.email.in_(chunk)).order_by(Lead.id.desc())
        )
        for lid, email in rows:  # lowest id last, so it wins
            found[("email", str(email))] = lid
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
        users = {u.id: u for u in ctx.session.scalars(
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
        v.get("product"), v["_touch"].get("channel"), v["attributes"], v.get("team_id"),
    )


def _insert_leads(
    ctx: HookContext, rows: list[_Row], decisions: dict[int, Decision], now: Any
) -> dict[tuple[str, str], int]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING, one statement per kind of key."""
    if not rows:
        return {}
    created: dict[tuple[str, str], int] = {}
    by_kind: dict[str, list[dict[str, Any]]] = {"phone": [], "email": []}
    for r in rows:
        v = r.values
        d = decisions.get(r.index)
        owner = d.owner_id if d else None
        by_kind[r.dedupe[0]].append({
            "tenant_id": ctx.tenant.id, "name": v.get("name") or "", "phone": v.get("phone"),
            "email": v.get("email"), "source": v.get("source") or v["_touch"].get("source"),
            "region": v.get("region"), "product": v.get("product"), "stage": "new",
            "is_customer": False, "owner_id": owner,
            "team_id": (d.team_id if d and d.team_id is not None else v.get("team_id")),
            "locked": False, "attributes": v["attributes"], "created_at": now, "updated_at": now,
            "assigned_at": now if owner is not None else None, "stage_changed_at": now,
            "version": 1,
        })
    dialect = ctx.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    for kind, values in by_kind.items():
        if not values:
            continue
        where = text("phone IS NOT NULL") if kind == "phone" else text("phone IS NULL AND email IS NOT NULL")
        values.sort(key=lambda v: v[kind])  # one key order for every writer: no deadlocks
        for chunk in _chunks(values, 1000):
            stmt = (
                dialect_insert(Lead).values(chunk)
                .on_conflict_do_nothing(index_elements=["tenant_id", kind], index_where=where)
                .returning(Lead.id, Lead.phone if kind == "phone" else Lead.email)
            )
            for lid, value in ctx.session.execute(stmt):
                created[(kind, str(value))] = lid
    return created


def _fill_merged(ctx: HookContext, rows: list[_Row], now: Any) -> dict[int, list[str]]:
    """Fill a known lead's empty fields from the submission; never overwrite what is there."""
    if not rows:
        return {}
    ids = sorted({r.outcome.lead_id for r in rows if r.outcome.lead_id is not None})
    current = {
        lead.id: lead
        for lead in ctx.session.execute(
            select(Lead.id, *(getattr(Lead, f) for f in FILLABLE)).where(Lead.id.in_(ids))
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
        filled[id(r)] = names
    for lead_id, values in changes.items():
        if values:
            ctx.session.execute(
                update(Lead).where(Lead.id == lead_id)
                .values(**values, updated_at=now, version=Lead.version + 1)
                .execution_options(synchronize_session=False)
            )
    return filled


def _insert_touches(ctx: HookContext, rows: list[_Row], now: Any) -> None:
    """One touch per stored submission; a key that won a race elsewhere is a 409 for the batch."""
    if not rows:
        return
    keyed = sorted((r for r in rows if r.sub.key), key=lambda r: str(r.sub.key))  # no deadlocks
    plain = [r for r in rows if not r.sub.key]
    if plain:
        result = ctx.session.execute(
            insert(Touch).returning(Touch.id, sort_by_parameter_order=True),
            [_touch_values(ctx, r, now) for r in plain],
        )
        for r, tid in zip(plain, result.scalars(), strict=True):
            r.outcome.touch_id = tid
    if keyed:
        dialect = ctx.session.get_bind().dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
        by_key = {str(r.sub.key): r for r in keyed}
        for chunk in _chunks(keyed, 1000):
            stmt = (
                dialect_insert(Touch).values([_touch_values(ctx, r, now) for r in chunk])
                .on_conflict_do_nothing(
                    index_elements=["tenant_id", "idempotency_key"],
                    index_where=text("idempotency_key IS NOT NULL"),
                )
                .returning(Touch.id, Touch.idempotency_key)
            )
            for tid, key in ctx.session.execute(stmt):
                by_key.pop(str(key)).outcome.touch_id = tid
        if by_key:
            raise Conflict(
                "a request with this idempotency key is being processed; retry it",
                {"idempotency_key": sorted(by_key)[:10]},
            )


def _touch_values(ctx: HookContext, r: _Row, now: Any) -> dict[str, Any]:
    touch = r.values["_touch"]
    return {
        "tenant_id": ctx.tenant.id, "lead_id": r.outcome.lead_id, "idempotency_key": r.sub.key,
        "merged": r.outcome.status == "merged", "raw": snapshot(dict(r.sub.raw if r.sub.raw is not None else r.sub.data)),
        "received_at": now,
        "channel": touch.get("channel"), "source": touch.get("source") or r.values.get("source"),
        "utm_source": touch.get("utm_source"), "utm_medium": touch.get("utm_medium"),
        "utm_campaign": touch.get("utm_campaign"), "utm_term": touch.get("utm_term"),
        "utm_content": touch.get("utm_content"), "click_id": touch.get("click_id"),
    }


def _record_created(ctx: HookContext, rows: list[_Row], decisions: dict[int, Decision], now: Any) -> None:
    """Stage history, the ownership ledger and the events of the leads this batch created."""
    actor = ctx.actor.user_id if ctx.actor else None
    ctx.session.execute(insert(StageChange), [
        {"tenant_id": ctx.tenant.id, "lead_id": r.outcome.lead_id, "old": None, "new": "new",
         "actor_id": actor, "at": now}
        for r in rows
    ])
    ledger = []
    created_items = []
    assigned_items = []
    for r in rows:
        d = decisions.get(r.index)
        r.outcome.decision = d
        v = r.values
        team_id = d.team_id if d and d.team_id is not None else v.get("team_id")
        owner = d.owner_id if d else None
        created_items.append({
            "lead_id": r.outcome.lead_id, "name": v.get("name") or "", "phone": v.get("phone"),
            "email": v.get("email"), "source": v.get("source") or v["_touch"].get("source"),
            "stage": "new", "owner_id": owner, "team_id": team_id, "is_customer": False, "created_at": now,
        })
        if d is None:
            continue
        ledger.append({
            "tenant_id": ctx.tenant.id, "lead_id": r.outcome.lead_id, "from_user_id": None,
            "to_user_id": owner, "from_team_id": None, "to_team_id": team_id, "reason": "created",
            "rule": d.rule, "note": "", "detail": d.explanation, "actor_id": actor, "at": now,
        })
        if owner is not None:
            assigned_items.append({
                "lead_id": r.outcome.lead_id, "from_user_id": None, "to_user_id": owner,
                "team_id": team_id, "reason": "created", "rule": d.rule,
            })
    if ledger:
        ctx.session.execute(insert(OwnershipChange), ledger)
    ctx.emit("lead_created", created_items)
    if assigned_items:
        ctx.emit("lead_assigned", assigned_items)
