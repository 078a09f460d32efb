"""``/api/v1/settlement``: ledger entries, periods (list, lock, mark paid), statements (JSON, CSV).

Who sees what: admins everything; managers their branch's entries,
periods and statements (and the statements of its people); reps their own
entries and statement. Admins lock periods and mark them paid.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from pelago.plugin import (
    HookContext,
    InvalidInput,
    NotFound,
    User,
    commit,
    current_context,
    file_response,
    paginate,
    requires,
)

from .. import closing, ledger, periods, statements
from .. import schemas as s
from ..models import Entry, Period
from . import blp
from .branches import get_branch, visible_branch_ids


def _period_out(p: Period) -> dict[str, Any]:
    return {k: getattr(p, k) for k in ("id", "branch_id", "key", "starts_at", "ends_at", "state", "totals",
                                       "checksum", "locked_at", "locked_by", "paid_at", "paid_by")}


@blp.route("/entries", methods=["GET"])
@blp.arguments(s.EntryArgs, location="query")
@blp.response(200, s.EntryPage)
def list_entries(args: dict[str, Any]) -> Any:
    """Ledger entries, newest first: by ``period`` (YYYY-MM), ``period_id``, ``branch_id``, ``user_id``, ``deal_id``.

    Admins see every entry, managers their branch's, reps only their own. `?limit=` and `?cursor=` page.
    """
    c = current_context()
    stmt = select(Entry)
    assert c.actor is not None
    if not c.actor.at_least("manager"):
        stmt = stmt.where(Entry.user_id == c.actor.user_id)
    else:
        allowed = visible_branch_ids(c)
        if allowed is not None:
            stmt = stmt.where(Entry.branch_id.in_(sorted(allowed)))
    for name in ("period_id", "branch_id", "user_id", "deal_id"):
        if args.get(name):
            stmt = stmt.where(getattr(Entry, name) == args[name])
    if args.get("period"):
        stmt = stmt.where(Entry.period_id.in_(select(Period.id).where(Period.key == args["period"])))
    page = paginate(c.session, stmt, Entry.id, args.get("cursor"), args["limit"])
    keys = _keys(c, {e.period_id for e in page.items})
    return {"items": [statements.entry_out(e, keys) for e in page.items], "next_cursor": page.next_cursor}


def _keys(c: HookContext, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(c.session.execute(select(Period.id, Period.key).where(Period.id.in_(sorted(ids)))).all())


@blp.route("/periods", methods=["GET"])
@blp.arguments(s.PeriodArgs, location="query")
@blp.response(200, s.PeriodPage)
@requires("manager")
def list_periods(args: dict[str, Any]) -> Any:
    """Periods, newest first; managers see their branch's.

    Managers (their branch's) and admins. Filter by `key` (YYYY-MM), `branch_id` or `state` (open, locked,
    paid); each period carries its totals and checksum once locked. `?limit=` and `?cursor=` page.
    """
    c = current_context()
    stmt = select(Period)
    allowed = visible_branch_ids(c)
    if allowed is not None:
        stmt = stmt.where(Period.branch_id.in_(sorted(allowed)))
    for name in ("key", "branch_id", "state"):
        if args.get(name):
            stmt = stmt.where(getattr(Period, name) == args[name])
    page = paginate(c.session, stmt, Period.id, args.get("cursor"), args["limit"])
    return {"items": [_period_out(p) for p in page.items], "next_cursor": page.next_cursor}


def periods_to_lock(c: HookContext, key: str, branch_id: int | None) -> list[Period]:
    stmt = select(Period).where(Period.key == key)
    if branch_id is not None:
        stmt = stmt.where(Period.branch_id == branch_id)
    found = list(c.session.scalars(stmt.order_by(Period.branch_id)))
    if not found:
        where = f" of branch {branch_id}" if branch_id is not None else ""
        raise InvalidInput(f"no period {key}{where}", {"period": [f"no period {key}{where} exists"]})
    return found


@blp.route("/periods/lock", methods=["POST"])
@blp.arguments(s.LockArgs)
@blp.response(200, s.PeriodList)
@requires("admin")
def lock_periods(data: dict[str, Any]) -> Any:
    """Lock period ``YYYY-MM`` of every branch (or of ``branch_id``): all or none (409 listing differences).

    Admins only; only a period that has ended. Cumulative plans are trued up, then each branch's credited wins
    and refunds are reconciled to the cent with the core's deals and refunds; any difference refuses the whole
    lock with 409, listing each one, and so does a period not ended or not open. Otherwise the totals and their
    checksum are stored and the periods never change again. A `branch_id` the caller cannot read is a 404; no such
    period a 422.
    """
    c = current_context()
    if data.get("branch_id") is not None:
        get_branch(c, data["branch_id"])
    locked = [closing.lock(c, p, c.actor.user_id if c.actor else None)
              for p in periods_to_lock(c, data["period"], data.get("branch_id"))]
    out = {"items": [_period_out(p) for p in locked]}
    commit()
    return out


@blp.route("/periods/<int:period_id>/paid", methods=["POST"])
@blp.response(200, s.SettlementPeriod)
@requires("admin")
def mark_paid(period_id: int) -> Any:
    """Mark a locked period paid (409 unless locked).

    Admins only. The state moves to paid (with who and when); the totals, checksum and bounds stay as locked.
    An unknown period is a 404; one that is open or already paid a 409.
    """
    c = current_context()
    period = closing.mark_paid(c, closing.get_period(c, period_id), c.actor.user_id if c.actor else None)
    out = _period_out(period)
    commit()
    return out


def _current_key(c: HookContext, zone: ZoneInfo) -> str:
    return periods.period_of(c.now(), zone, ledger.months(c)).key


def _branch_period(c: HookContext, branch_id: int, key: str | None) -> Period:
    """The branch's period ``key``; without one, the current period, which before the branch's first
    entry of the month is not stored yet: then an empty open period (not saved), so its statement is zeros."""
    branch = get_branch(c, branch_id)
    zone = ZoneInfo(branch.timezone)
    wanted = key or _current_key(c, zone)
    period = c.session.scalar(select(Period).where(Period.branch_id == branch_id, Period.key == wanted))
    if period is None and key is None:
        bounds = periods.period_of(c.now(), zone, ledger.months(c))
        return Period(branch_id=branch_id, key=bounds.key, starts_at=bounds.starts_at, ends_at=bounds.ends_at,
                      state="open")
    if period is None:
        raise InvalidInput(f"no period {wanted} of branch {branch_id}",
                           {"period": [f"no period {wanted} of this branch"]}, location="query")
    return period


@blp.route("/statements/branches/<int:branch_id>", methods=["GET"])
@blp.arguments(s.StatementArgs, location="query")
@blp.response(200, s.BranchStatement)
@requires("manager")
def branch_statement(args: dict[str, Any], branch_id: int) -> Any:
    """The branch's statement for ``period``: its totals and each person's.

    Managers (their own branch) and admins. `?period=` (YYYY-MM) defaults to the period that contains now in
    the branch's timezone; a locked or paid period shows the totals its lock stored, an open one is computed
    now. A branch the caller may not read is a 404; a `?period=` the branch does not have a 422 (the current
    period before its first entry answers an empty statement).
    """
    c = current_context()
    out = statements.branch_statement(c, _branch_period(c, branch_id, args["period"]))
    out["period"] = _period_out(out["period"])
    return out


@blp.route("/statements/branches/<int:branch_id>/csv", methods=["GET"])
@blp.arguments(s.StatementArgs, location="query")
@blp.response(200, content_type="text/csv", description="UTF-8 with a BOM: the branch line, then one per person")
@requires("manager")
def branch_statement_csv(args: dict[str, Any], branch_id: int) -> Any:
    """The branch's statement as CSV

    The same statement as a CSV download (UTF-8 with a BOM, so Excel reads Chinese names; a cell that would
    start a formula is quoted): a header line with the period's state and checksum, the branch line, then one
    line per person. Managers (their own branch) and admins; same `?period=` and errors as the JSON.
    """
    c = current_context()
    period = _branch_period(c, branch_id, args["period"])
    data = statements.branch_statement(c, period)
    head = [["branch", str(branch_id), "period", period.key, "state", period.state, "checksum", period.checksum or ""]]
    rows = [{"user_id": "branch", **data["branch"]}, *data["users"]]
    return _csv(statements.csv_text(head, statements.COLUMNS, rows), f"statement-{branch_id}-{period.key}.csv")


def _user_scope(c: HookContext, user_id: int) -> set[int] | None:
    assert c.actor is not None
    if c.session.scalar(select(User.id).where(User.id == user_id)) is None:
        raise NotFound(f"no statement of user {user_id}")
    if c.actor.at_least("admin"):
        return None
    if c.actor.user_id == user_id:
        return None
    if c.actor.at_least("manager"):
        return visible_branch_ids(c)
    raise NotFound(f"no statement of user {user_id}")


@blp.route("/statements/users/<int:user_id>", methods=["GET"])
@blp.arguments(s.StatementArgs, location="query")
@blp.response(200, s.UserStatement)
def user_statement(args: dict[str, Any], user_id: int) -> Any:
    """A person's statement for ``period``: her entries in every branch and their sums (reps: their own).

    Reps read only their own (another person's is a 404), managers those of people with entries in their
    branch, admins anyone's. `?period=` (YYYY-MM) defaults to the period that contains now; locked periods show
    their stored totals. An unknown user is a 404.
    """
    c = current_context()
    scope = _user_scope(c, user_id)
    out = statements.user_statement(c, user_id, args["period"] or _current_key(c, c.tenant.tz), scope)
    out["periods"] = [_period_out(p) for p in out["periods"]]
    return out


@blp.route("/statements/users/<int:user_id>/csv", methods=["GET"])
@blp.arguments(s.StatementArgs, location="query")
@blp.response(200, content_type="text/csv", description="UTF-8 with a BOM: her entries, then her totals")
def user_statement_csv(args: dict[str, Any], user_id: int) -> Any:
    """A person's statement as CSV

    The same statement as a CSV download (UTF-8 with a BOM; a cell that would start a formula is quoted): her
    totals, then her entries. Reps read only their own (another person's is a 404), managers those of people
    with entries in their branch, admins anyone's; same `?period=` as the JSON.
    """
    c = current_context()
    scope = _user_scope(c, user_id)
    key = args["period"] or _current_key(c, c.tenant.tz)
    data = statements.user_statement(c, user_id, key, scope)
    head = [["user", str(user_id), "period", key],
            ["totals", *(f"{k}={v}" for k, v in data["totals"].items())]]
    return _csv(statements.csv_text(head, statements.ENTRY_COLUMNS, data["entries"]),
                f"statement-user-{user_id}-{key}.csv")


def _csv(body: str, name: str) -> Any:
    return file_response(body, "text/csv", name, bom=True)
