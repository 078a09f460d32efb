"""Privacy requests (PIPL): export everything held about a person, erase a person, audit both.

A *person* is named by a phone (normalised to E.164 with the tenant's region,
as intake does) or an email (lowercased); their leads are the tenant's leads
with that phone, or with that email (with or without a phone).

* :func:`export` gathers the leads with their touches, activities, stage
  changes, ownership ledger, deals and refunds, and each plugin's part
  (the ``privacy_export`` hook), as JSON.
* :func:`erase` anonymises them in place: the lead rows and their ids stay,
  so deals, refunds and the ledgers stay whole, but every personal value
  goes (contact fields, attributes, raw payloads, UTM and click ids, external
  ids, notes, free-text reasons, the items of past events, the CSV rows in
  stored import files, webhook submissions not routed yet), and plugins are
  told through the ``person_erased`` event, delivered to each implementing
  plugin whether it is on for the tenant or not.
* Both write a :class:`~pelago.core.models.PrivacyAudit` row: who, when,
  which leads, and the person only as a salted hash.

Like every service, these work in ``ctx.session`` and leave the commit to the
caller.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, LargeBinary, Select, String, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from ..asking import answering
from ..context import HookContext
from ..errors import InvalidInput
from ..events import snapshot
from ..models import (
    Activity,
    Deal,
    Import,
    Lead,
    OutboundPost,
    OutboxEvent,
    OwnershipChange,
    PrivacyAudit,
    Refund,
    StageChange,
    StoredSubmission,
    Touch,
    User,
)
from ..pagination import Page, decode, encode, paginate
from ..phones import BadPhone, normalise_fast

#: what stands in for an erased free-text value that cannot be empty (a lost reason, a refund's reason)
ERASED = "(erased)"
#: the keys of event items that may hold personal data, and what replaces them on erasure
ITEM_KEYS: Mapping[str, Any] = {
    "name": "", "phone": None, "email": None, "region": None, "attributes": {}, "lost_reason": None,
    "note": "",
}
#: events whose ``reason`` is free text (elsewhere it is a kind such as ``manual``)
FREE_TEXT_REASON = frozenset({"deal_refunded"})
#: why an erased person's submission that was not routed never will be (``core_submission.errors``)
SUBMISSION_ERASED = "the person was erased before this submission was routed: it never will be"
#: how far before a person's first lead the outbox is searched for events about them (clock skew)
EVENT_MARGIN = timedelta(hours=1)
MAX_REASON = 500


@dataclass(frozen=True)
class Subject:
    """The person a request is about: ``kind`` ``phone`` or ``email``, and the normalised value."""

    kind: str
    value: str


@dataclass(frozen=True)
class Erasure:
    """What an erasure did: the leads it anonymised (none if already erased) and its audit row."""

    lead_ids: list[int]
    audit_id: int
    event_id: int | None


def subject(ctx: HookContext, phone: str | None = None, email: str | None = None, *,
            location: str = "json") -> Subject:
    """The person named by exactly one of ``phone`` and ``email``, normalised; 422 naming the field.

    ``location`` says where the fields were (the ``json`` body, or the ``query`` of the audit's filter).
    """
    phone = (phone or "").strip() or None
    email = (email or "").strip().lower() or None
    if (phone is None) == (email is None):
        raise InvalidInput("name the person by a phone or an email", {
            "phone": ["give exactly one of phone and email"],
        }, location)
    if phone is not None:
        try:
            return Subject("phone", normalise_fast(phone, ctx.tenant.default_region))
        except BadPhone as exc:
            raise InvalidInput("invalid phone", {"phone": [str(exc)]}, location) from None
    assert email is not None
    if "@" not in email or len(email) > 254:
        raise InvalidInput("invalid email", {"email": ["not a valid email address"]}, location)
    return Subject("email", email)


def leads_of(ctx: HookContext, person: Subject, *, for_update: bool = False) -> list[Lead]:
    """The tenant's leads of ``person``, oldest first (an erased lead matches nothing)."""
    column = Lead.phone if person.kind == "phone" else Lead.email
    stmt: Select[Lead] = select(Lead).where(column == person.value).order_by(Lead.id)
    if for_update:
        stmt = stmt.with_for_update()
    return list(ctx.session.scalars(stmt))


# --- export -----------------------------------------------------------------------


def export(ctx: HookContext, person: Subject, *, actor: str | None = None) -> dict[str, Any]:
    """Everything held about ``person`` as JSON, and an audit row saying who asked.

    ``leads`` holds one document per lead (its row, touches, activities,
    stage changes, ownership ledger, deals with their refunds); ``submissions``
    the person's webhook submissions not routed (yet), ``accepted`` or
    ``failed``, with their payload as received: the same ones erasure blanks,
    matched the same way (the person's phone or email, or their leads');
    ``plugins`` holds each plugin's answer to ``privacy_export`` under its
    name. Another tenant's person, or nobody: ``leads`` and ``submissions``
    are empty.
    """
    s = ctx.session
    leads = leads_of(ctx, person)
    ids = [lead.id for lead in leads]
    documents = []
    if ids:
        by_lead = {
            name: _grouped(s, model, ids)
            for name, model in (("touches", Touch), ("activities", Activity), ("stage_changes", StageChange),
                                ("ownership", OwnershipChange), ("deals", Deal))
        }
        deal_ids = [d["id"] for deals in by_lead["deals"].values() for d in deals]
        refunds: dict[int, list[dict[str, Any]]] = {}
        if deal_ids:
            for refund in s.scalars(select(Refund).where(Refund.deal_id.in_(deal_ids)).order_by(Refund.id)):
                refunds.setdefault(refund.deal_id, []).append(_row(refund))
        for lead in leads:
            deals = [{**deal, "refunds": refunds.get(deal["id"], [])} for deal in by_lead["deals"].get(lead.id, [])]
            documents.append({
                "lead": _row(lead),
                "touches": by_lead["touches"].get(lead.id, []),
                "activities": by_lead["activities"].get(lead.id, []),
                "stage_changes": by_lead["stage_changes"].get(lead.id, []),
                "ownership": by_lead["ownership"].get(lead.id, []),
                "deals": deals,
            })
    known = {person.value} | {v for lead in leads for v in (lead.phone, lead.email) if v}
    pending = sorted(_unrouted_submissions(ctx, known, lock=False))
    submissions = [
        {k: v for k, v in _row(sub).items() if k not in _SUBMISSION_INTERNALS}
        for sub in (s.scalars(select(StoredSubmission).where(StoredSubmission.id.in_(pending))
                              .order_by(StoredSubmission.id)) if pending else ())
    ]
    plugins = _plugin_parts(ctx, ids) if ids else {}
    audit = _audit(ctx, "export", person, ids, actor=actor)
    return snapshot({
        "subject": {person.kind: person.value},
        "tenant": ctx.tenant.slug,
        "exported_at": ctx.now(),
        "audit_id": audit.id,
        "leads": documents,
        "submissions": submissions,
        "plugins": plugins,
    })


#: a stored submission's columns that are the router's bookkeeping, not about the person
_SUBMISSION_INTERNALS = frozenset({"lease_token", "lease_until"})


def _plugin_parts(ctx: HookContext, lead_ids: Sequence[int]) -> dict[str, Any]:
    """Each plugin's answer to ``privacy_export``, asked one by one through pluggy, under its name."""
    disabled = ctx.host.disabled_for(ctx.tenant)
    parts: dict[str, Any] = {}
    for plugin in answering(ctx, "privacy_export"):
        results = ctx.host.asker("privacy_export", plugin, disabled)(ctx=ctx, lead_ids=list(lead_ids))
        if results and results[0]:
            parts[plugin] = snapshot(dict(results[0]))
    return parts


def _grouped(session: Session, model: Any, lead_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for row in session.scalars(select(model).where(model.lead_id.in_(lead_ids)).order_by(model.id)):
        out.setdefault(row.lead_id, []).append(_row(row))
    return out


def _row(obj: Any) -> dict[str, Any]:
    """A row's columns as a dict (its tenant aside)."""
    columns = obj.__mapper__.column_attrs
    return {c.key: getattr(obj, c.key) for c in columns if c.key != "tenant_id"}


# --- erasure ----------------------------------------------------------------------


def erase(ctx: HookContext, person: Subject, *, reason: str, actor: str | None = None) -> Erasure:
    """Anonymise every lead of ``person``, tell the plugins, and audit it. Idempotent.

    Each lead keeps its row, id, stage, owner, team, source, product and
    dates (the ledgers, deals and statistics stay whole); ``name`` becomes
    empty, ``phone`` and ``region`` NULL, ``attributes`` empty, ``email`` the
    marker ``erased:<id>`` (a lead needs a phone or an email, and no real
    address has that form, so no submission ever matches it), a lost reason
    ``(erased)``. Its routed webhook submissions are deleted; its touches lose their raw payload, UTM, click id and
    external id, and the CSV rows it was imported from are blanked in the
    imports' stored files; its activities their notes; its ownership ledger rows their
    notes; its stage changes their lost reason; its refunds their reason;
    past events about it (``core_event``) their personal item keys. The
    person's webhook submissions not routed yet lose their payload and are
    ``failed`` for good (lead or not: a submission the router has not
    reached is the person too, and must not make them again). The
    ``person_erased`` event then reaches the plugins. An erased lead is not
    found by phone or email again, so a second erasure finds nothing to do
    (and is audited all the same), and a new submission makes a new lead.
    """
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("an erasure needs a reason", {"reason": ["required"]})
    if len(reason) > MAX_REASON:
        raise InvalidInput("reason too long", {"reason": [f"longer than {MAX_REASON} characters"]})
    # First the person's submissions not routed yet: on PostgreSQL this waits for a router that holds
    # one of them in its batch, so a lead it is making now is committed, and found just below.
    pending = _unrouted_submissions(ctx, {person.value}, lock=True)
    leads = leads_of(ctx, person, for_update=True)
    ids = [lead.id for lead in leads]
    # ... and those that name the person through another phone or email of theirs (their leads')
    known = {person.value} | {v for lead in leads for v in (lead.phone, lead.email) if v}
    pending |= _unrouted_submissions(ctx, known, lock=True)
    _blank_submissions(ctx, pending)
    event_id = None
    if ids:
        _allow_ledger_updates(ctx.session, True)
        try:
            _anonymise(ctx, leads)
        finally:
            _allow_ledger_updates(ctx.session, False)
        event_id = ctx.emit("person_erased", [{"lead_id": lead_id} for lead_id in ids])
    audit = _audit(ctx, "erase", person, ids, actor=actor, reason=reason)
    return Erasure(ids, audit.id, event_id)


#: the ASCII characters Python's ``str.strip()`` removes (intake strips a submission's email so)
_ASCII_SPACE = "".join(chr(i) for i in range(128) if chr(i).isspace())


def _unrouted_submissions(ctx: HookContext, known: set[str], *, lock: bool) -> set[int]:
    """Ids of the tenant's webhook submissions not routed (``accepted``, or ``failed``) that name ``known``.

    A submission names a person by its ``dedupe`` key (its E.164 phone, else
    its email) or by the email in its mapped fields (a submission with a
    phone keeps its email only there), stripped and lowercased as intake
    does. A routed (``processed``) submission is its lead's, and goes with
    it. ``lock``: the rows are locked for this transaction (PostgreSQL), in
    id order, after any router that holds them commits.

    Matched in SQL, so only the person's rows are read, not every pending
    submission of the tenant. SQL's ``trim`` and ``lower`` equal Python's
    ``strip`` and ``lower`` on ASCII text only (SQLite's ``lower`` leaves
    other letters alone, PostgreSQL's depends on the collation): a mapped
    email with any other character is read too, and matched in Python. Such
    emails are rare; those rows are locked too.
    """
    c = StoredSubmission
    emails = {v for v in known if "@" in v}
    names: ColumnElement[bool] = c.dedupe.in_(sorted(known))
    email = c.data["email"].as_string()
    postgres = ctx.session.get_bind().dialect.name == "postgresql"
    if emails:
        # PostgreSQL spells trim(x, characters) btrim
        ascii_key = func.lower((func.btrim if postgres else func.trim)(email, _ASCII_SPACE))
        wide = (func.octet_length(email) != func.char_length(email) if postgres
                else func.length(email) != func.length(email.cast(LargeBinary)))
        names = names | ascii_key.in_(sorted(emails)) | wide
    stmt = select(c.id, c.dedupe, email.label("email")).where(
        c.tenant_id == ctx.tenant.id, c.status.in_(("accepted", "failed")), names)
    if lock and postgres:
        # in id order, as the router's batch lock (submissions._hold), so the two cannot deadlock
        stmt = stmt.order_by(c.id).with_for_update(of=c)
    return {
        row.id for row in ctx.session.execute(stmt)
        if row.dedupe in known or (emails and str(row.email or "").strip().lower() in emails)
    }


def _blank_submissions(ctx: HookContext, ids: set[int]) -> None:
    """The submissions lose their payload, mapped fields, attribution and key, and are ``failed`` for good.

    A router that claimed one before now drops it (it routes only ``accepted``
    rows it still holds), so the person is not made again. The idempotency
    key (an external id, or the body's hash) goes too: a retried webhook is a
    new submission, as after a routed one was deleted.
    """
    if not ids:
        return
    now = ctx.now()
    c = StoredSubmission
    # processed meanwhile (a router committed before the lock): its lead was erased, and it was deleted
    ctx.session.execute(update(c).where(
        c.tenant_id == ctx.tenant.id, c.id.in_(ids), c.status.in_(("accepted", "failed")),
    ).values(
        data={}, touch={}, raw={}, dedupe=None, key="erased:" + c.id.cast(String), status="failed",
        outcome=None, errors={"submission": [SUBMISSION_ERASED]}, lease_token=None, lease_until=None,
        processed_at=func.coalesce(c.processed_at, now),
    ).execution_options(synchronize_session=False))


def _anonymise(ctx: HookContext, leads: Sequence[Lead]) -> None:
    """Every personal value of ``leads`` and of what hangs off them, gone; rows and ids kept."""
    s = ctx.session
    ids = [lead.id for lead in leads]
    since = min(lead.created_at for lead in leads) - EVENT_MARGIN
    now = ctx.now()
    for lead in leads:
        lead.name = ""
        lead.phone = None
        lead.email = f"erased:{lead.id}"
        lead.region = None
        lead.attributes = {}
        if lead.lost_reason is not None:
            lead.lost_reason = ERASED
        lead.updated_at = now
    s.flush()
    _blank_import_rows(s, _import_rows(s, ids))  # before the touches' raw payloads, which say where they came from
    bulk = {"synchronize_session": False}
    s.execute(update(Touch).where(Touch.lead_id.in_(ids)).values(
        raw={}, utm_source=None, utm_medium=None, utm_campaign=None, utm_term=None, utm_content=None,
        click_id=None, idempotency_key=None,
    ).execution_options(**bulk))
    # A routed webhook submission is its touch's payload again: it goes (the touch stays).
    s.execute(delete(StoredSubmission).where(StoredSubmission.lead_id.in_(ids)).execution_options(**bulk))
    s.execute(update(Activity).where(Activity.lead_id.in_(ids)).values(note="").execution_options(**bulk))
    s.execute(update(OwnershipChange).where(OwnershipChange.lead_id.in_(ids), OwnershipChange.note != "")
              .values(note="").execution_options(**bulk))
    s.execute(update(StageChange).where(StageChange.lead_id.in_(ids), StageChange.lost_reason.is_not(None))
              .values(lost_reason=ERASED).execution_options(**bulk))
    deal_ids = select(Deal.id).where(Deal.lead_id.in_(ids)).scalar_subquery()
    s.execute(update(Refund).where(Refund.deal_id.in_(deal_ids)).values(reason=ERASED).execution_options(**bulk))
    _blank_posts(s, _scrub_events(ctx, ids, since))
    s.flush()


def _import_rows(session: Session, lead_ids: Sequence[int]) -> dict[int, set[int]]:
    """``{import id: row numbers}`` of the CSV rows the leads came from, as their touches record it."""
    found: dict[int, set[int]] = {}
    stmt = select(Touch.raw).where(Touch.lead_id.in_(lead_ids), Touch.idempotency_key.like("import:%"))
    for raw in session.scalars(stmt):
        import_id, row = (raw.get("import_id"), raw.get("row")) if isinstance(raw, dict) else (None, None)
        if type(import_id) is int and type(row) is int:
            found.setdefault(import_id, set()).add(row)
    return found


def _blank_import_rows(session: Session, rows: Mapping[int, set[int]]) -> None:
    """Blank those rows in the imports' stored files (every cell empty; the other rows and the numbering stay).

    Only rows an import has committed have touches, and an import resumed
    after a crash goes on after its last committed row, so blanking them
    never changes what a running import still has to do. A blank row is
    skipped by the import reader.
    """
    for imp in session.scalars(select(Import).where(Import.id.in_(list(rows)))):
        encoding = imp.encoding or "utf-8"
        delimiter = (imp.options or {}).get("delimiter") or ","
        out = io.StringIO(newline="")
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
        reader = csv.reader(io.TextIOWrapper(io.BytesIO(imp.content), encoding=encoding, newline=""),
                            delimiter=delimiter, strict=True)
        for number, record in enumerate(reader):
            writer.writerow([""] * len(record) if number in rows[imp.id] else record)
        imp.content = out.getvalue().encode(encoding)


def _allow_ledger_updates(session: Session, on: bool) -> None:
    """On PostgreSQL, let this transaction UPDATE the append-only ledgers (migration ``0008``), or stop it."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT set_config('pelago.erasing', :value, true)"), {"value": "on" if on else "off"})


def _about_leads(dialect: str, lead_ids: Sequence[int]) -> Any:
    """SQL: the ``core_event`` row has an item whose ``lead_id`` is one of ``lead_ids``."""
    if dialect == "postgresql":
        return text(
            "EXISTS (SELECT 1 FROM jsonb_array_elements(core_event.payload -> 'items') AS i "
            "WHERE jsonb_typeof(i) = 'object' AND (i ->> 'lead_id') = ANY(:privacy_ids))"
        ).bindparams(bindparam("privacy_ids", [str(i) for i in lead_ids], type_=ARRAY(String())))
    return text(
        "EXISTS (SELECT 1 FROM json_each(core_event.payload, '$.items') AS i "
        "WHERE i.type = 'object' AND json_extract(i.value, '$.lead_id') IN :privacy_ids)"
    ).bindparams(bindparam("privacy_ids", list(lead_ids), expanding=True))


def _scrub_events(ctx: HookContext, lead_ids: Sequence[int], since: datetime) -> list[int]:
    """Blank the personal keys of past event items about ``lead_ids`` (the outbox keeps the rest); their ids.

    Events about a lead are not older than the lead: only the tenant's
    events since its first lead (less a margin for clock skew) are searched.
    """
    s = ctx.session
    event_ids = list(s.scalars(select(OutboxEvent.id).where(
        OutboxEvent.tenant_id == ctx.tenant.id, OutboxEvent.created_at >= since,
        _about_leads(s.get_bind().dialect.name, lead_ids),
    )))
    if not event_ids:
        return event_ids
    wanted = set(lead_ids)
    for event in s.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(event_ids))):
        items = []
        for item in event.payload.get("items", []):
            if isinstance(item, dict) and item.get("lead_id") in wanted:
                item = {k: (ITEM_KEYS[k] if k in ITEM_KEYS else v) for k, v in item.items()}
                if event.name in FREE_TEXT_REASON and "reason" in item:
                    item["reason"] = ERASED
            items.append(item)
        event.payload = {**event.payload, "items": items}
    return event_ids


def _blank_posts(session: Session, event_ids: Sequence[int]) -> None:
    """Blank the bodies of the unsent posts queued by handlers of those events, and do not send them.

    A post's body is what its handler made of the event, personal values
    included. ``queued`` and ``failed`` posts lose it and end ``failed``
    (an empty body would only mislead its receiver); a ``sending`` post is
    with its receiver already, a ``sent`` one's body is gone when sent.
    Posts queued outside an event handler have no ``event_id`` and are not
    found (docs/operations.md, retention).
    """
    if not event_ids:
        return
    session.execute(update(OutboundPost).where(
        OutboundPost.event_id.in_(list(event_ids)), OutboundPost.status.in_(("queued", "failed")),
    ).values(body=b"", status="failed", next_attempt_at=None,
             last_error="not sent: its event was about a person since erased")
    .execution_options(synchronize_session=False))


# --- the audit --------------------------------------------------------------------


def subject_hash(salt: str, person: Subject) -> str:
    """The stored stand-in for ``person``: SHA-256 of the row's salt, the kind and the value."""
    return hashlib.sha256(f"{salt}:{person.kind}:{person.value}".encode()).hexdigest()


def subject_matches(row: PrivacyAudit, person: Subject) -> bool:
    """Whether the audit ``row`` is about ``person`` (recomputes the salted hash)."""
    return row.subject_kind == person.kind and hmac.compare_digest(
        row.subject_hash, subject_hash(row.subject_salt, person))


def _audit(ctx: HookContext, action: str, person: Subject, lead_ids: Sequence[int], *, actor: str | None,
           reason: str = "") -> PrivacyAudit:
    salt = secrets.token_hex(16)
    row = PrivacyAudit(
        action=action, actor_id=ctx.actor.user_id if ctx.actor else None, actor=_actor_label(ctx, actor),
        subject_kind=person.kind, subject_salt=salt, subject_hash=subject_hash(salt, person),
        lead_ids=list(lead_ids), reason=reason, at=ctx.now(),
    )
    ctx.session.add(row)
    ctx.session.flush()
    return row


def _actor_label(ctx: HookContext, given: str | None) -> str:
    if given:
        return given[:254]
    if ctx.actor is None:
        return "system"
    if ctx.actor.email:
        return ctx.actor.email
    email = ctx.session.scalar(select(User.email).where(User.id == ctx.actor.user_id))
    return email or f"user {ctx.actor.user_id}"


def audit_log(ctx: HookContext, cursor: str | None, limit: int, person: Subject | None = None,
              action: str | None = None) -> Page[PrivacyAudit]:
    """The tenant's privacy audit, newest first; ``action`` filters in SQL.

    ``person`` keeps the rows about that person: the hash is salted per row,
    so the rows of its kind are read in id order and checked one by one (a
    tenant's audit is small), ``limit`` matches per page.
    """
    stmt = select(PrivacyAudit)
    if action:
        stmt = stmt.where(PrivacyAudit.action == action)
    if person is None:
        return paginate(ctx.session, stmt, PrivacyAudit.id, cursor, limit)
    stmt = stmt.where(PrivacyAudit.subject_kind == person.kind)
    if cursor:
        stmt = stmt.where(PrivacyAudit.id < decode(cursor))
    found: list[PrivacyAudit] = []
    for row in ctx.session.scalars(stmt.order_by(PrivacyAudit.id.desc()).execution_options(yield_per=500)):
        if subject_matches(row, person):
            if len(found) == limit:
                return Page(found, encode(found[-1].id))
            found.append(row)
    return Page(found, None)
