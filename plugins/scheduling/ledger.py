"""The class-hour ledger: accounts, consumption (消课), reversals, refunds and expiry.

Append-only: every change of an account is a new ``scheduling_entry`` line;
nothing is edited or deleted. The account row holds the running totals, and
each change of them is a *conditional* UPDATE that names the totals it was
computed from (compare-and-swap) and the bounds it must keep, so two
concurrent consumptions of the last hour cannot both pass: the second
UPDATE matches no row, reads again, and finds nothing left. The CHECK
constraint ``balance`` keeps every total within bounds in the database too.

Revenue: ``recognised`` is ``paid × consumed_purchased / purchased_hours``
rounded to the cent (:func:`recognised_for`), so each consumption recognises
the difference of two such values: the rounding residue lands on the last
hour, and recognised + refunded + remaining value = paid, to the cent.
Gift hours are worth nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from sqlalchemy import DateTime, Numeric, bindparam, insert, select, text, type_coerce, update
from sqlalchemy.exc import IntegrityError

from pelago.plugin import (
    Conflict,
    HookContext,
    Lead,
    NotFound,
    among,
    dialect_name,
    insert_ignoring_conflict,
    refund_deal,
    to_money,
    upsert,
)

from . import arrays
from .models import Account, Entry, Package, Student

PLUGIN = "scheduling"
ZERO = Decimal("0.00")
CENT = Decimal("0.01")
TRIES = 20


def recognised_for(paid: Decimal, purchased: Decimal, consumed: Decimal) -> Decimal:
    """Revenue recognised once ``consumed`` of ``purchased`` hours are used: exact at the last hour.

    Rounded half-up to the cent as :func:`to_money` does; its checks are left out (called once per charge, a
    thousand times a roll-call batch): the value lies between 0 and ``paid``, itself money.
    """
    if consumed >= purchased:
        return paid
    return (paid * consumed / purchased).quantize(CENT, rounding=ROUND_HALF_UP)


def ensure_student(ctx: HookContext, lead_id: int) -> None:
    """The lead's student row (made once; concurrent makers do not collide); 404 for another tenant's lead."""
    if ctx.session.scalar(select(Lead.id).where(Lead.id == lead_id)) is None:
        raise NotFound(f"lead {lead_id} not found")
    upsert(ctx.session, Student, [{"tenant_id": ctx.tenant.id, "lead_id": lead_id, "created_at": ctx.now()}],
           key=["tenant_id", "lead_id"], update=[])


def open_account(ctx: HookContext, lead_id: int, package: Package, *, paid: Decimal, deal_id: int | None,
                 at: datetime | None = None) -> int | None:
    """Open an account for a sale of ``package``; ``None`` if the deal has one already (idempotent)."""
    ensure_student(ctx, lead_id)
    at = at or ctx.now()
    hours = package.hours
    values: dict[str, Any] = {
        "tenant_id": ctx.tenant.id, "lead_id": lead_id, "package_id": package.id, "deal_id": deal_id,
        "purchased_hours": hours, "gift_hours": package.gift_hours, "consumed_purchased": ZERO,
        "consumed_gift": ZERO, "paid": to_money(paid), "unit_price": to_money(paid / hours),
        "recognised": ZERO, "refunded": ZERO, "status": "open", "opened_at": at,
        "expires_at": at + timedelta(days=package.validity_days), "closed_at": None,
    }
    if deal_id is not None:
        account_id = insert_ignoring_conflict(ctx.session, Account.__table__, values, ["tenant_id", "deal_id"],
                                              text("deal_id IS NOT NULL"))
        if account_id is None:
            return None
    else:
        account_id = ctx.session.scalar(insert(Account).returning(Account.id), [values])
    ctx.session.execute(insert(Entry), [{
        "tenant_id": ctx.tenant.id, "account_id": account_id, "kind": "purchase", "purchased_hours": hours,
        "gift_hours": package.gift_hours, "amount": to_money(paid), "note": package.name, "at": at,
    }])
    return account_id


class Charge(NamedTuple):
    """What one consumption or reversal did (a named tuple: a batch makes a thousand)."""

    account_id: int
    purchased: Decimal
    gift: Decimal
    amount: Decimal
    remaining: Decimal
    entry_id: int


def _read(ctx: HookContext, account_id: int) -> Any:
    row = ctx.session.execute(
        select(Account.id, Account.lead_id, Account.status, Account.purchased_hours, Account.gift_hours,
               Account.consumed_purchased, Account.consumed_gift, Account.paid, Account.recognised,
               Account.refunded, Account.expires_at)
        .where(Account.id == account_id)
        .execution_options(populate_existing=True)
    ).first()
    if row is None:
        raise NotFound(f"account {account_id} not found")
    return row


def _swap(ctx: HookContext, row: Any, **values: Any) -> bool:
    """The compare-and-swap: update the account only if its totals are still those of ``row``."""
    done = ctx.session.execute(
        update(Account)
        .where(Account.id == row.id, Account.status == "open",
               Account.consumed_purchased == row.consumed_purchased, Account.consumed_gift == row.consumed_gift,
               Account.refunded == row.refunded)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return done.rowcount == 1  # type: ignore[attr-defined]


def consume(ctx: HookContext, account_id: int, hours: Decimal, *, attendance_id: int | None = None,
            generation: int | None = None, lesson_id: int | None = None, note: str = "") -> Charge:
    """Take ``hours`` from the account (gift first, a setting); 409 if it is closed or has too few left."""
    gift_first = ctx.settings(PLUGIN)["gift_first"]
    for _ in range(TRIES):
        row = _read(ctx, account_id)
        if row.status != "open":
            raise Conflict(f"account {account_id} is {row.status}", {"account_id": [f"is {row.status}"]})
        if row.expires_at <= ctx.now():
            raise Conflict(f"account {account_id} expired at {row.expires_at.isoformat()}",
                           {"account_id": ["expired"]})
        gift_left = row.gift_hours - row.consumed_gift
        bought_left = row.purchased_hours - row.consumed_purchased
        if gift_left + bought_left < hours:
            raise Conflict(
                f"account {account_id} has {gift_left + bought_left} hours left; the lesson takes {hours}",
                {"account_id": ["not enough hours"]},
            )
        gift = min(hours, gift_left) if gift_first else max(hours - bought_left, ZERO)
        bought = hours - gift
        consumed = row.consumed_purchased + bought
        recognised = recognised_for(row.paid, row.purchased_hours, consumed)
        if _swap(ctx, row, consumed_purchased=consumed, consumed_gift=row.consumed_gift + gift,
                 recognised=recognised):
            break
    else:  # pragma: no cover - needs TRIES concurrent changes of one account in a row
        raise Conflict(f"account {account_id} is changing too fast; try again")
    amount = recognised - row.recognised
    entry_id = ctx.session.scalar(insert(Entry).returning(Entry.id), [{
        "tenant_id": ctx.tenant.id, "account_id": account_id, "kind": "consume", "purchased_hours": -bought,
        "gift_hours": -gift, "amount": amount, "attendance_id": attendance_id, "generation": generation,
        "lesson_id": lesson_id, "note": note, "at": ctx.now(),
    }])
    remaining = gift_left + bought_left - hours
    _maybe_low(ctx, row, gift_left + bought_left, remaining)
    return Charge(account_id, bought, gift, amount, remaining, entry_id)  # type: ignore[arg-type]


class Want(NamedTuple):
    """One consumption asked of :func:`consume_many` (a named tuple: a batch makes a thousand)."""

    account_id: int
    hours: Decimal
    attendance_id: int | None = None
    generation: int | None = None
    lesson_id: int | None = None
    note: str = ""


class Contended(Exception):
    """An account changed between the read and the conditional update: take the one-by-one path."""


#: The account columns :func:`consume_many` works from (:func:`account_columns`).
ACCOUNT_COLUMNS = ("id", "lead_id", "status", "purchased_hours", "gift_hours", "consumed_purchased", "consumed_gift",
                   "paid", "recognised", "refunded", "expires_at")


def account_columns(session: Any) -> list[Any]:
    """The columns of :data:`ACCOUNT_COLUMNS`, for a Core read of accounts by :func:`consume_many` or its callers.

    On PostgreSQL they are read as the driver gives them: ``numeric(18, 2)``
    is already a ``Decimal`` to the cent and ``timestamptz`` an aware
    datetime, so the Money and UtcDateTime result processing (a quantize or
    a conversion per value, 7,000 values a batch of a thousand accounts)
    adds nothing but time. On SQLite money is stored in cents: the column
    types convert it.
    """
    a = Account.__table__.c
    if dialect_name(session) != "postgresql":
        return [a[name] for name in ACCOUNT_COLUMNS]
    raw: dict[str, Any] = {name: Numeric() for name in ("purchased_hours", "gift_hours", "consumed_purchased",
                                                        "consumed_gift", "paid", "recognised", "refunded")}
    raw["expires_at"] = DateTime(timezone=True)
    return [type_coerce(a[name], raw[name]).label(name) if name in raw else a[name] for name in ACCOUNT_COLUMNS]


def consume_many(ctx: HookContext, wants: Sequence[Want], known: Mapping[int, Any] | None = None) -> list[Charge]:
    """Many consumptions in a few statements: one read, one conditional UPDATE per account (one statement),
    one INSERT of the lines. All or nothing: 409 if any account is closed or short of hours;
    :class:`Contended` (nothing written, the caller's savepoint rolls back) if an account changed meanwhile.

    ``known``: accounts the caller has just read (rows starting with :func:`account_columns`, in that order,
    by id), which are not read again; a stale one only makes the conditional update come out short
    (:class:`Contended`), never a wrong charge.
    """
    if not wants:
        return []
    settings = ctx.settings(PLUGIN)
    gift_first = settings["gift_first"]
    threshold = Decimal(settings["low_balance_hours"])
    now = ctx.now()
    t = ctx.tenant.id
    rows: dict[int, Any] = dict(known) if known else {}
    ids = sorted({w.account_id for w in wants})
    missing = [i for i in ids if i not in rows]
    if missing:
        a = Account.__table__.c
        # a Core read on the session's connection (tenant named here): the ORM's per-row machinery is most of the
        # cost of reading a thousand accounts, and nothing of this batch is pending in the session
        rows.update((r[0], r) for r in ctx.session.connection().execute(
            select(*account_columns(ctx.session)).where(a.tenant_id == t, among(ctx.session, a.id, missing))
        ).all())
    # account id → [consumed_gift, consumed_purchased, recognised] as the batch moves them, and the account's
    # fixed figures; rows are unpacked once (by position: a Row's attribute costs ten times its index)
    state: dict[int, list[Decimal]] = {}
    fixed: dict[int, tuple[Decimal, Decimal, Decimal, Any]] = {}  # gift_hours, purchased_hours, paid, row
    # the lines, column by column (what the INSERT takes)
    e_account: list[int] = []
    e_bought: list[Decimal] = []
    e_gift: list[Decimal] = []
    e_amount: list[Decimal] = []
    out: list[Charge] = []
    crossed: dict[int, dict[str, Any]] = {}
    for w in wants:
        account_id, hours = w.account_id, w.hours
        st = state.get(account_id)
        if st is None:
            row = rows.get(account_id)
            if row is None:
                raise NotFound(f"account {account_id} not found")
            _, _, status, purchased, gift_hours, consumed_p, consumed_g, paid, recognised, _, expires_at, *_ = row
            if status != "open":
                raise Conflict(f"account {account_id} is {status}", {"account_id": [f"is {status}"]})
            if expires_at <= now:
                raise Conflict(f"account {account_id} expired at {_utc(expires_at).isoformat()}",
                               {"account_id": ["expired"]})
            st = state[account_id] = [consumed_g, consumed_p, recognised]
            fixed[account_id] = (gift_hours, purchased, paid, row)
        cg, cp, rec = st
        gift_hours, purchased, paid, row = fixed[account_id]
        gift_left, bought_left = gift_hours - cg, purchased - cp
        before = gift_left + bought_left
        if before < hours:
            raise Conflict(f"account {account_id} has {before} hours left; the lesson takes {hours}",
                           {"account_id": ["not enough hours"]})
        if gift_first:
            gift = hours if hours <= gift_left else gift_left
        else:
            gift = hours - bought_left if hours > bought_left else ZERO
        bought = hours - gift
        cp += bought
        new_rec = recognised_for(paid, purchased, cp)
        st[0], st[1], st[2] = cg + gift, cp, new_rec
        amount = new_rec - rec
        e_account.append(account_id)
        e_bought.append(-bought)
        e_gift.append(-gift)
        e_amount.append(amount)
        after = before - hours
        out.append(Charge(account_id, bought, gift, amount, after, 0))
        if before >= threshold > after:
            crossed[account_id] = {"account_id": account_id, "lead_id": row[1], "remaining_hours": str(after),
                                   "threshold_hours": str(threshold), "expires_at": _utc(row[10]).isoformat()}
    old = [fixed[i][3] for i in ids]  # the rows as read: what the conditional update compares with
    if dialect_name(ctx.session) == "postgresql":
        # arrays, not a VALUES list per batch: one short statement each, whatever the batch; each array one
        # text literal (:mod:`.arrays`), not adapted value by value by the driver
        done = ctx.session.execute(text(
            "UPDATE scheduling_account AS a SET consumed_gift = v.new_g, consumed_purchased = v.new_p,"
            " recognised = v.new_rec"
            " FROM unnest(CAST(:ids AS bigint[]), CAST(:old_g AS numeric[]), CAST(:old_p AS numeric[]),"
            "             CAST(:old_r AS numeric[]), CAST(:new_g AS numeric[]), CAST(:new_p AS numeric[]),"
            "             CAST(:new_rec AS numeric[])) AS v(id, old_g, old_p, old_r, new_g, new_p, new_rec)"
            " WHERE a.tenant_id = :t AND a.id = v.id AND a.status = 'open' AND a.consumed_gift = v.old_g"
            " AND a.consumed_purchased = v.old_p AND a.refunded = v.old_r"
        ), {"t": t, "ids": arrays.numbers(ids), "old_g": arrays.numbers(r[6] for r in old),
            "old_p": arrays.numbers(r[5] for r in old), "old_r": arrays.numbers(r[9] for r in old),
            "new_g": arrays.numbers(state[i][0] for i in ids), "new_p": arrays.numbers(state[i][1] for i in ids),
            "new_rec": arrays.numbers(state[i][2] for i in ids)})
        if done.rowcount != len(ids):  # type: ignore[attr-defined]
            raise Contended()
        ctx.session.execute(text(
            "INSERT INTO scheduling_entry (tenant_id, kind, at, account_id, purchased_hours, gift_hours, amount,"
            " attendance_id, generation, lesson_id, note)"
            " SELECT :t, 'consume', :at, u.* FROM unnest(CAST(:account_id AS bigint[]),"
            " CAST(:purchased_hours AS numeric[]), CAST(:gift_hours AS numeric[]), CAST(:amount AS numeric[]),"
            " CAST(:attendance_id AS bigint[]), CAST(:generation AS integer[]), CAST(:lesson_id AS bigint[]),"
            " CAST(:note AS text[])) AS u"
        ).bindparams(bindparam("at", type_=Entry.__table__.c.at.type)), {
            "t": t, "at": now, "account_id": arrays.numbers(e_account), "purchased_hours": arrays.numbers(e_bought),
            "gift_hours": arrays.numbers(e_gift), "amount": arrays.numbers(e_amount),
            "attendance_id": arrays.plain([w.attendance_id for w in wants]),
            "generation": arrays.plain([w.generation for w in wants]),
            "lesson_id": arrays.plain([w.lesson_id for w in wants]), "note": arrays.texts([w.note for w in wants]),
        })
    else:
        table = Account.__table__
        money = table.c.consumed_gift.type
        stmt = (
            update(table)
            .where(table.c.tenant_id == t, table.c.id == bindparam("aid"), table.c.status == "open",
                   table.c.consumed_gift == bindparam("old_g", type_=money),
                   table.c.consumed_purchased == bindparam("old_p", type_=money),
                   table.c.refunded == bindparam("old_r", type_=money))
            .values(consumed_gift=bindparam("new_g", type_=money),
                    consumed_purchased=bindparam("new_p", type_=money),
                    recognised=bindparam("new_rec", type_=money))
        )
        params = [{"aid": r[0], "old_g": r[6], "old_p": r[5], "old_r": r[9],
                   "new_g": state[r[0]][0], "new_p": state[r[0]][1], "new_rec": state[r[0]][2]} for r in old]
        done = ctx.session.connection().execute(stmt, params)
        if done.rowcount != len(params):
            raise Contended()
        ctx.session.execute(insert(Entry.__table__), [
            {"tenant_id": t, "account_id": w.account_id, "kind": "consume", "purchased_hours": b, "gift_hours": g,
             "amount": m, "attendance_id": w.attendance_id, "generation": w.generation, "lesson_id": w.lesson_id,
             "note": w.note, "at": now} for w, b, g, m in zip(wants, e_bought, e_gift, e_amount, strict=True)
        ])
    if crossed:
        ctx.emit("scheduling_low_balance", list(crossed.values()))
    return out


def _utc(at: datetime) -> datetime:
    return at.astimezone(timezone.utc)


def reverse(ctx: HookContext, attendance_id: int, generation: int, note: str = "") -> Charge | None:
    """Undo the consumption of ``(attendance_id, generation)`` with a reversal line; ``None`` if there was none."""
    entry_id = ctx.session.scalar(
        select(Entry.id).where(Entry.attendance_id == attendance_id, Entry.generation == generation,
                               Entry.kind == "consume")
    )
    return None if entry_id is None else reverse_entry(ctx, entry_id, note)


def reverse_entry(ctx: HookContext, entry_id: int, note: str = "") -> Charge:
    """Write the reversal of consumption line ``entry_id``: its hours go back, its revenue is taken back.

    The totals and the reversal line change in one savepoint; the line's
    unique ``reverses_id`` makes a second reversal of the same line fail (409)
    and takes its change of the totals back with it.
    """
    charge = ctx.session.execute(
        select(Entry.account_id, Entry.purchased_hours, Entry.gift_hours, Entry.lesson_id, Entry.attendance_id,
               Entry.generation)
        .where(Entry.id == entry_id, Entry.kind == "consume")
    ).first()
    if charge is None:
        raise NotFound(f"no consumption {entry_id}")
    bought, gift = -charge.purchased_hours, -charge.gift_hours
    try:
        with ctx.session.begin_nested():  # the totals and the line move together, or neither does
            for _ in range(TRIES):
                row = _read(ctx, charge.account_id)
                if row.status != "open":
                    raise Conflict(f"account {charge.account_id} is {row.status}: its roll-calls can no longer change",
                                   {"account_id": [f"is {row.status}"]})
                consumed = row.consumed_purchased - bought
                recognised = recognised_for(row.paid, row.purchased_hours, consumed)
                if _swap(ctx, row, consumed_purchased=consumed, consumed_gift=row.consumed_gift - gift,
                         recognised=recognised):
                    break
            else:  # pragma: no cover
                raise Conflict(f"account {charge.account_id} is changing too fast; try again")
            amount = recognised - row.recognised
            new_id = ctx.session.scalar(insert(Entry).returning(Entry.id), [{
                "tenant_id": ctx.tenant.id, "account_id": charge.account_id, "kind": "reversal",
                "purchased_hours": bought, "gift_hours": gift, "amount": amount,
                "attendance_id": charge.attendance_id, "generation": charge.generation,
                "lesson_id": charge.lesson_id, "reverses_id": entry_id, "note": note, "at": ctx.now(),
            }])
    except IntegrityError:  # the unique reverses_id: someone reversed it first
        raise Conflict(f"consumption {entry_id} is already reversed") from None
    left = row.purchased_hours - consumed + row.gift_hours - row.consumed_gift + gift
    return Charge(charge.account_id, -bought, -gift, amount, left, new_id)  # type: ignore[arg-type]


def _maybe_low(ctx: HookContext, row: Any, before: Decimal, after: Decimal) -> None:
    """Emit ``scheduling_low_balance`` when a consumption takes the account under the threshold."""
    threshold = Decimal(ctx.settings(PLUGIN)["low_balance_hours"])
    if before >= threshold > after:
        ctx.emit("scheduling_low_balance", [{
            "account_id": row.id, "lead_id": row.lead_id, "remaining_hours": str(after),
            "threshold_hours": str(threshold), "expires_at": row.expires_at.isoformat(),
        }])


def remaining_value(row: Any) -> Decimal:
    """What the unconsumed purchased hours are worth now (0 once closed)."""
    if row.status != "open":
        return ZERO
    return row.paid - row.recognised - row.refunded


def refund(ctx: HookContext, account_id: int, reason: str) -> tuple[Decimal, int | None]:
    """Refund the unconsumed purchased hours and close the account; a core refund of its deal.

    The amount is ``paid − recognised`` (the remaining hours × the unit price,
    with the rounding residue); gift hours are worth 0. Closing is a
    conditional update from ``open``, and the ``refund`` line is unique per
    account, so an account is never refunded twice.
    """
    for _ in range(TRIES):
        row = _read(ctx, account_id)
        if row.status != "open":
            raise Conflict(f"account {account_id} is {row.status}: nothing to refund", {"account_id": ["closed"]})
        amount = remaining_value(row)
        if _swap(ctx, row, status="refunded", refunded=row.refunded + amount, closed_at=ctx.now()):
            break
    else:  # pragma: no cover
        raise Conflict(f"account {account_id} is changing too fast; try again")
    deal_id = ctx.session.scalar(select(Account.deal_id).where(Account.id == account_id))
    refund_id = None
    if deal_id is not None and amount > 0:
        refund_id = refund_deal(ctx, deal_id, amount=amount, reason=f"class hours refunded: {reason}")
    ctx.session.execute(insert(Entry), [{
        "tenant_id": ctx.tenant.id, "account_id": account_id, "kind": "refund",
        "purchased_hours": -(row.purchased_hours - row.consumed_purchased),
        "gift_hours": -(row.gift_hours - row.consumed_gift), "amount": amount, "refund_id": refund_id,
        "note": reason, "at": ctx.now(),
    }])
    return amount, refund_id


def expire(ctx: HookContext, limit: int = 500) -> int:
    """Close accounts past their expiry: the unused value is recognised (an ``expire`` line each)."""
    now = ctx.now()
    ids = list(ctx.session.scalars(
        select(Account.id).where(Account.status == "open", Account.expires_at <= now).order_by(Account.id).limit(limit)
    ))
    done = 0
    for account_id in ids:
        row = _read(ctx, account_id)
        if row.status != "open":
            continue
        value = remaining_value(row)
        if not _swap(ctx, row, status="expired", recognised=row.recognised + value, closed_at=now):
            continue  # changed meanwhile: the next run sees it again
        ctx.session.execute(insert(Entry), [{
            "tenant_id": ctx.tenant.id, "account_id": account_id, "kind": "expire",
            "purchased_hours": -(row.purchased_hours - row.consumed_purchased),
            "gift_hours": -(row.gift_hours - row.consumed_gift), "amount": value, "note": "expired", "at": now,
        }])
        done += 1
    return done


def account_out(row: Account, ledger: list[Entry] | None = None) -> dict[str, Any]:
    remaining = row.purchased_hours + row.gift_hours - row.consumed_purchased - row.consumed_gift
    out: dict[str, Any] = {
        "id": row.id, "lead_id": row.lead_id, "package_id": row.package_id, "deal_id": row.deal_id,
        "status": row.status, "purchased_hours": str(row.purchased_hours), "gift_hours": str(row.gift_hours),
        "consumed_purchased": str(row.consumed_purchased), "consumed_gift": str(row.consumed_gift),
        "remaining_hours": str(remaining if row.status == "open" else ZERO), "paid": str(row.paid),
        "unit_price": str(row.unit_price), "recognised": str(row.recognised), "refunded": str(row.refunded),
        "remaining_value": str(remaining_value(row)), "opened_at": row.opened_at, "expires_at": row.expires_at,
        "closed_at": row.closed_at,
    }
    if ledger is not None:
        out["ledger"] = [{
            "id": e.id, "kind": e.kind, "purchased_hours": str(e.purchased_hours), "gift_hours": str(e.gift_hours),
            "amount": str(e.amount), "attendance_id": e.attendance_id, "lesson_id": e.lesson_id,
            "refund_id": e.refund_id, "note": e.note, "at": e.at,
        } for e in ledger]
    return out
