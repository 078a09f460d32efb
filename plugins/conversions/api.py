"""``/api/v1/conversions``: accounts, rules, the conversions and their status, the funnel, spend.

The host mounts this blueprint and answers 404 (naming the plugin) for a
tenant that has the plugin off. Admins manage accounts, rules and spend and
decide about conversions in doubt; managers and admins read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import request
from sqlalchemy import func, select, update

from pelago.plugin import (
    Blueprint,
    Conflict,
    InvalidInput,
    NotFound,
    commit,
    current_context,
    file_response,
    paginate,
    requires,
)

from . import funnel, sending, spend
from . import schemas as s
from .models import Account, Conversion, Rule, Spend

blp = Blueprint("conversions", __name__,
                description="Conversions reported back to ad platforms (数据回传), and each channel's funnel")


# --- accounts ---------------------------------------------------------------------------------------


def _account_out(a: Account) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "adapter": a.adapter, "url": a.url, "config": dict(a.config),
            "has_secret": bool(a.secret), "in_doubt": a.in_doubt, "created_at": a.created_at}


def _check_account(c: Any, data: Mapping[str, Any]) -> None:
    """The adapter is on for the tenant, and what it needs is there (422 naming the field otherwise)."""
    known = sending.adapters(c)
    info = known.get(data["adapter"])
    if info is None:
        raise InvalidInput("unknown adapter", {"adapter": [
            f"no adapter {data['adapter']!r} is on; on: {', '.join(sorted(known)) or 'none'}"]})
    errors: dict[str, Any] = {}
    if info.get("needs_url") and not data.get("url"):
        errors["url"] = [f"the {data['adapter']} adapter needs the endpoint URL"]
    missing = [k for k in info.get("config") or () if not str((data.get("config") or {}).get(k, "")).strip()]
    if missing:
        errors["config"] = {k: ["required by the adapter"] for k in missing}
    if info.get("needs_secret") and not data.get("secret"):
        errors["secret"] = [f"the {data['adapter']} adapter needs its access token"]
    if errors:
        raise InvalidInput("the adapter needs more", errors)


def _account(c: Any, account_id: int) -> Account:
    a = c.session.get(Account, account_id)
    if a is None:
        raise NotFound(f"account {account_id} not found")
    return a


@blp.route("/adapters", methods=["GET"])
@blp.response(200, s.ConversionsAdapterList)
@requires("admin")
def list_adapters() -> Any:
    """List the adapters on for this tenant.

    The built-in `generic` adapter and those of adapter plugins that are on,
    with what an account of each needs (`config` keys, `needs_url`,
    `needs_secret`) and whether the platform deduplicates (`idempotent`).
    """
    items = [{"config": [], "needs_url": False, "needs_secret": False, "idempotent": False, "personal": [],
              **info} for _, info in sorted(sending.adapters(current_context()).items())]
    return {"items": items}


@blp.route("/accounts", methods=["GET"])
@blp.response(200, s.ConversionsAccountList)
@requires("admin")
def list_accounts() -> Any:
    """List the ad platform accounts conversions go to.

    Their secrets are never shown: `has_secret` says whether one is stored.
    """
    c = current_context()
    return {"items": [_account_out(a) for a in c.session.scalars(select(Account).order_by(Account.id))]}


@blp.route("/accounts", methods=["POST"])
@blp.arguments(s.ConversionsAccountIn)
@blp.response(201, s.ConversionsAccountOut)
@requires("admin")
def create_account(data: dict[str, Any]) -> Any:
    """Add an ad platform account: an adapter, its endpoint, its fields and its token.

    The adapter must be on for the tenant and get what it needs (422 naming
    the field, nothing written); the token is encrypted at rest.
    """
    c = current_context()
    out = _account_out(make_account(c, data))
    commit()
    return out


def make_account(c: Any, data: dict[str, Any]) -> Account:
    """A new account from ``ConversionsAccountIn``-loaded data (422 naming the field); the caller commits."""
    _check_account(c, data)
    if c.session.scalar(select(Account.id).where(Account.name == data["name"])) is not None:
        raise InvalidInput("name taken", {"name": ["another account has this name"]})
    a = Account(**data, created_at=c.now())
    c.session.add(a)
    c.session.flush()
    return a


@blp.route("/accounts/<int:conversion_account_id>", methods=["PATCH"])
@blp.arguments(s.ConversionsAccountPatch)
@blp.response(200, s.ConversionsAccountOut)
@requires("admin")
def patch_account(data: dict[str, Any], conversion_account_id: int) -> Any:
    """Change an account: its name, endpoint, fields, token or in-doubt policy.

    Checked as a whole against its adapter after the change; a secret left
    out is kept. Another tenant's account is a 404.
    """
    c = current_context()
    a = _account(c, conversion_account_id)
    merged = {"adapter": a.adapter, "url": a.url, "config": a.config, "secret": a.secret, **data}
    _check_account(c, merged)
    if "name" in data and c.session.scalar(
            select(Account.id).where(Account.name == data["name"], Account.id != a.id)) is not None:
        raise InvalidInput("name taken", {"name": ["another account has this name"]})
    for k, v in data.items():
        setattr(a, k, v)
    c.session.flush()
    out = _account_out(a)
    commit()
    return out


@blp.route("/accounts/<int:conversion_account_id>", methods=["DELETE"])
@blp.response(204)
@requires("admin")
def delete_account(conversion_account_id: int) -> Any:
    """Delete an account with its rules and their conversions.

    Refused (409) while one of its conversions is being sent.
    """
    c = current_context()
    a = _account(c, conversion_account_id)
    busy = c.session.scalar(select(func.count()).select_from(Conversion).join(
        Rule, Rule.id == Conversion.rule_id).where(Rule.account_id == a.id, Conversion.status == "sending"))
    if busy:
        raise Conflict(f"{busy} conversions of this account are being sent; try again in a moment")
    c.session.delete(a)
    commit()
    return None


# --- rules ------------------------------------------------------------------------------------------


def _rule_out(r: Rule) -> dict[str, Any]:
    return {k: getattr(r, k) for k in s.ConversionsRuleOut().fields}


def _rule(c: Any, rule_id: int) -> Rule:
    r = c.session.get(Rule, rule_id)
    if r is None:
        raise NotFound(f"rule {rule_id} not found")
    return r


def _check_rule(c: Any, data: Mapping[str, Any], rule_id: int | None = None) -> None:
    errors: dict[str, list[str]] = {}
    if "account_id" in data and c.session.get(Account, data["account_id"]) is None:
        errors["account_id"] = [f"no account {data['account_id']} in this tenant"]
    if "name" in data and c.session.scalar(
            select(Rule.id).where(Rule.name == data["name"], Rule.id != (rule_id or 0))) is not None:
        errors["name"] = ["another rule has this name"]
    if errors:
        raise InvalidInput("invalid rule", errors)


@blp.route("/rules", methods=["GET"])
@blp.response(200, s.ConversionsRuleList)
@requires("manager")
def list_rules() -> Any:
    """List the conversion rules.

    Each says which moment of which channel's leads is reported to which
    account, under what event type, within what window.
    """
    c = current_context()
    return {"items": [_rule_out(r) for r in c.session.scalars(select(Rule).order_by(Rule.id))]}


@blp.route("/rules", methods=["POST"])
@blp.arguments(s.ConversionsRuleIn)
@blp.response(201, s.ConversionsRuleOut)
@requires("admin")
def create_rule(data: dict[str, Any]) -> Any:
    """Add a conversion rule: a channel's moment, reported to an account as an event type.

    Moments: `valid_lead`, `first_contact`, `qualified`, `deal_won`. A rule
    applies to moments from its creation on; an unknown moment, a window
    under a day or another tenant's account is a 422, nothing written.
    """
    c = current_context()
    out = _rule_out(make_rule(c, data))
    commit()
    return out


def make_rule(c: Any, data: dict[str, Any]) -> Rule:
    """A new rule from ``ConversionsRuleIn``-loaded data (422 naming the field); the caller commits."""
    _check_rule(c, data)
    r = Rule(**data, created_at=c.now())
    c.session.add(r)
    c.session.flush()
    return r


@blp.route("/rules/<int:conversion_rule_id>", methods=["GET"])
@blp.response(200, s.ConversionsRuleOut)
@requires("manager")
def show_rule(conversion_rule_id: int) -> Any:
    """Read one rule.

    Another tenant's rule is a 404.
    """
    return _rule_out(_rule(current_context(), conversion_rule_id))


@blp.route("/rules/<int:conversion_rule_id>", methods=["PATCH"])
@blp.arguments(s.ConversionsRulePatch)
@blp.response(200, s.ConversionsRuleOut)
@requires("admin")
def patch_rule(data: dict[str, Any], conversion_rule_id: int) -> Any:
    """Change a rule, or switch it off (`active: false`).

    Conversions already queued keep the event type they were queued with.
    """
    c = current_context()
    r = _rule(c, conversion_rule_id)
    _check_rule(c, data, r.id)
    for k, v in data.items():
        setattr(r, k, v)
    c.session.flush()
    out = _rule_out(r)
    commit()
    return out


@blp.route("/rules/<int:conversion_rule_id>", methods=["DELETE"])
@blp.response(204)
@requires("admin")
def delete_rule(conversion_rule_id: int) -> Any:
    """Delete a rule and its conversions.

    To stop reporting but keep the history, switch it off instead.
    """
    c = current_context()
    c.session.delete(_rule(c, conversion_rule_id))
    commit()
    return None


# --- conversions ------------------------------------------------------------------------------------


def _conversion_out(x: Conversion) -> dict[str, Any]:
    return {k: getattr(x, k) for k in s.ConversionsOut().fields}


@blp.route("/conversions", methods=["GET"])
@blp.arguments(s.ConversionsArgs, location="query")
@blp.response(200, s.ConversionsPage)
@requires("manager")
def list_conversions(args: dict[str, Any]) -> Any:
    """List conversions, newest first, by lead, rule, channel or status.

    Each shows where it is (queued, sending, sent, accepted, rejected with
    the platform's message, expired, in_doubt, failed) and its attempts.
    """
    c = current_context()
    stmt = select(Conversion)
    for key in ("lead_id", "rule_id", "channel", "status"):
        if args.get(key) is not None:
            stmt = stmt.where(getattr(Conversion, key) == args[key])
    page = paginate(c.session, stmt, Conversion.id, args.get("cursor"), args["limit"])
    return {"items": [_conversion_out(x) for x in page.items], "next_cursor": page.next_cursor}


@blp.route("/conversions/summary", methods=["GET"])
@blp.response(200, s.ConversionsStatusSummary)
@requires("manager")
def summary() -> Any:
    """Count conversions by channel, rule and status.

    One line per (channel, rule) with `{status: count}`.
    """
    c = current_context()
    lines: dict[tuple[str, int], dict[str, int]] = {}
    for channel, rule_id, status, n in c.session.execute(
        select(Conversion.channel, Conversion.rule_id, Conversion.status, func.count())
        .group_by(Conversion.channel, Conversion.rule_id, Conversion.status)
    ):
        lines.setdefault((channel, rule_id), {})[status] = n
    return {"items": [{"channel": ch, "rule_id": r, "counts": counts}
                      for (ch, r), counts in sorted(lines.items())]}


def _conversion(c: Any, conversion_id: int) -> Conversion:
    x = c.session.get(Conversion, conversion_id)
    if x is None:
        raise NotFound(f"conversion {conversion_id} not found")
    return x


@blp.route("/conversions/<int:conversion_id>", methods=["GET"])
@blp.response(200, s.ConversionsOut)
@requires("manager")
def show_conversion(conversion_id: int) -> Any:
    """Read one conversion, with the platform's last answer.

    Another tenant's conversion is a 404.
    """
    return _conversion_out(_conversion(current_context(), conversion_id))


@blp.route("/conversions/<int:conversion_id>/decision", methods=["POST"])
@blp.arguments(s.ConversionsDecision)
@blp.response(200, s.ConversionsOut)
@requires("admin")
def decide(data: dict[str, Any], conversion_id: int) -> Any:
    """Decide about a rejected, failed or in-doubt conversion: send it again, or record it as accepted.

    `resend` queues it now (after fixing what the platform rejected, or
    having checked that the platform does not have it); `accepted` records
    that a user found it on the platform. Only from `rejected`, `failed` or
    `in_doubt` (409 otherwise), by one conditional update.
    """
    c = current_context()
    x = _conversion(c, conversion_id)
    now = c.now()
    values: dict[str, Any] = (
        {"status": "queued", "next_attempt_at": now, "attempts": 0,
         "message": f"resend asked by user {c.actor.user_id}"}
        if data["decision"] == "resend" else
        {"status": "accepted", "message": f"recorded as accepted by user {c.actor.user_id}"}
    )
    done = c.session.execute(
        update(Conversion).where(Conversion.id == x.id, Conversion.status.in_(("rejected", "failed", "in_doubt")))
        .values(updated_at=now, **values).execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        raise Conflict(f"conversion {x.id} is {x.status}: only a rejected, failed or in-doubt one can be decided")
    if data["decision"] == "resend":
        c.enqueue("conversions.send")
    c.session.expire(x)
    out = _conversion_out(_conversion(c, conversion_id))
    commit()
    return out


# --- the funnel and spend ---------------------------------------------------------------------------


@blp.route("/funnel", methods=["GET"])
@blp.arguments(s.ConversionsFunnelArgs, location="query")
@blp.response(200, s.ConversionsFunnel)
@requires("manager")
def show_funnel(args: dict[str, Any]) -> Any:
    """The channel funnel of the leads created from `start` to `end` (the tenant's days).

    Grouped by `group_by` (touch fields, default `channel`): leads,
    duplicates, contacted, qualified, won, revenue net of refunds, median
    time to first contact, conversions reported and accepted, and, grouped
    by channel and/or campaign, spend, cost per lead and deal and return on
    spend. Money is decimal strings in the tenant's currency.
    """
    return funnel.report(current_context(), args["start"], args["end"], args["group_by"])


@blp.route("/funnel.csv", methods=["GET"])
@blp.arguments(s.ConversionsFunnelArgs, location="query")
@blp.response(200, {"type": "string"}, content_type="text/csv")
@requires("manager")
def funnel_csv(args: dict[str, Any]) -> Any:
    """The channel funnel as CSV (UTF-8 with a BOM, for spreadsheet programs).

    The same query and columns as `GET /funnel`: the group's fields first,
    then one column per figure, and a last `total` line.
    """
    doc = funnel.report(current_context(), args["start"], args["end"], args["group_by"])
    name = f"funnel-{args['start'].isoformat()}-{args['end'].isoformat()}.csv"
    return file_response("".join(funnel.to_csv(doc)), "text/csv", name, bom=True)


UPLOAD_DOC = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "CSV: day,channel,campaign,amount (UTF-8 or GB18030)"}},
    }}},
}


@blp.route("/spend", methods=["POST"])
@blp.doc(requestBody=UPLOAD_DOC)
@blp.response(200, s.ConversionsSpendUploaded)
@requires("admin")
def upload_spend(**_: Any) -> Any:
    """Upload spend per day, channel and campaign as CSV (multipart field `file`).

    Columns `day` (2026-03-02), `channel`, `amount` (never negative) and
    optionally `campaign`. Checked whole: a bad row refuses the file with
    every bad row's errors (422), nothing written. A stored day, channel and
    campaign takes the new amount.
    """
    c = current_context()
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInput("no file", {"file": ["send the CSV as the multipart/form-data field 'file'"]}, "form")
    rows = spend.parse(upload.read(spend.MAX_BYTES + 1))
    written = spend.store(c, rows)
    commit()
    return {"rows": written, "days": len({r["day"] for r in rows})}


@blp.route("/spend", methods=["GET"])
@blp.arguments(s.ConversionsSpendArgs, location="query")
@blp.response(200, s.ConversionsSpendList)
@requires("manager")
def list_spend(args: dict[str, Any]) -> Any:
    """List the stored spend of a date range (at most 400 days), by day, channel and campaign.

    Amounts are decimal strings in the tenant's currency.
    """
    if args["end"] < args["start"] or args["end"] - args["start"] > timedelta(days=400):
        raise InvalidInput("invalid range", {"end": ["on or after start, at most 400 days later"]}, "query")
    c = current_context()
    stmt = select(Spend).where(Spend.day >= args["start"], Spend.day <= args["end"])
    if args.get("channel"):
        stmt = stmt.where(Spend.channel == args["channel"])
    return {"items": [{"day": x.day, "channel": x.channel, "campaign": x.campaign, "amount": str(x.amount)}
                      for x in c.session.scalars(stmt.order_by(Spend.day, Spend.channel, Spend.campaign))]}
