"""Marshmallow schemas: the tenant's settlement settings, and the API's input and output.

Every value is range-checked here, so bad input is a 422 naming the field and
never reaches the database. Integers are ``strict`` (``1.5`` and ``"3"`` are
refused, not rounded), and timezones must be IANA names.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from pelago.plugin import MAX_LIMIT, LocalTime

from .periods import PERIOD_MONTHS

MAX_ID = 2**63 - 1


def _id(**kw: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID), **kw)


def _qid(**kw: Any) -> fields.Integer:
    return fields.Integer(validate=validate.Range(min=1, max=MAX_ID), **kw)


def valid_timezone(name: str) -> None:
    """An IANA timezone name (``Asia/Shanghai``); anything else is a field error."""
    try:
        if not name or name != name.strip() or "\x00" in name:
            raise ValueError
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError("not an IANA timezone name (e.g. Asia/Shanghai)") from None


def page_of(item: type[Schema], name: str) -> type[Schema]:
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item), required=True),
            "next_cursor": fields.String(allow_none=True, required=True,
                                         metadata={"description": "pass as ?cursor= for the next page"}),
        },
        name=name,
    )


class Settings(Schema):
    """The tenant's settlement settings (``PUT /api/v1/plugins/settlement``)."""

    division = fields.Boolean(
        load_default=True,
        metadata={"description": "divide new leads between branches by the distribution policies (choose_team); "
                                 "off: branches and policies are kept, routing ignores them"},
    )
    period_months = fields.Integer(
        strict=True, load_default=1, validate=validate.OneOf(PERIOD_MONTHS),
        metadata={"description": "months per settlement period (1 monthly, 3 quarterly …), starting in January; "
                                 "choose before the first deal is settled"},
    )
    referral_sources = fields.List(
        fields.String(validate=validate.Length(min=1, max=100)), load_default=lambda: ["referral"],
        validate=validate.Length(max=50),
        metadata={"description": "a lead with one of these sources makes its deals 'referral' deals (attribution)"},
    )


class PageArgs(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.String(load_default=None, validate=validate.Length(max=200))


# --- branches ------------------------------------------------------------------------

_NAME = validate.Length(min=1, max=100)
_CURRENCY = [
    validate.Length(equal=3),  # with the pattern: no trailing newline either
    validate.Regexp(r"^[A-Z]{3}$", error="a three-letter ISO 4217 code in capitals (e.g. CNY)"),
]


class BranchCreate(Schema):
    name = fields.String(required=True, validate=_NAME)
    timezone = fields.String(required=True, validate=[validate.Length(max=64), valid_timezone],
                             metadata={"description": "IANA name; daily caps and periods count in it"})
    currency = fields.String(load_default="CNY", validate=_CURRENCY)
    active = fields.Boolean(load_default=True)


class BranchPatch(Schema):
    name = fields.String(validate=_NAME)
    timezone = fields.String(validate=[validate.Length(max=64), valid_timezone])
    currency = fields.String(validate=_CURRENCY)
    active = fields.Boolean()

    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("give at least one field", "_schema")


class Branch(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    timezone = fields.String(required=True)
    currency = fields.String(required=True)
    active = fields.Boolean(required=True)
    team_ids = fields.List(fields.Integer(), required=True, metadata={"description": "the branch's teams, by id"})
    created_at = LocalTime(required=True)
    updated_at = LocalTime(required=True)


BranchPage = page_of(Branch, "BranchPage")


class BranchListArgs(PageArgs):
    active = fields.Boolean(load_default=None, allow_none=True, metadata={"description": "only active (or inactive)"})


class BranchTeam(Schema):
    team_id = fields.Integer(required=True)
    team_name = fields.String(required=True)
    branch_id = fields.Integer(required=True)
    created_at = LocalTime(required=True)


class BranchTeamList(Schema):
    items = fields.List(fields.Nested(BranchTeam), required=True)


# --- distribution policies and allocations ---------------------------------------------

MAX_WEIGHT = 10_000
MAX_CAP = 1_000_000


class PolicyEntryIn(Schema):
    branch_id = _id(required=True)
    team_id = _id(required=True, metadata={"description": "the branch's team that receives its leads"})
    weight = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=MAX_WEIGHT))
    daily_cap = fields.Integer(
        strict=True, allow_none=True, load_default=None, validate=validate.Range(min=1, max=MAX_CAP),
        metadata={"description": "most leads a day (the branch's calendar); null: no cap"},
    )


class PolicyCreate(Schema):
    source = fields.String(
        allow_none=True, load_default=None, validate=validate.Length(min=1, max=100),
        metadata={"description": "the leads' source this policy divides; null: every source without its own"},
    )
    effective_from = fields.AwareDateTime(
        load_default=None, allow_none=True,
        metadata={"description": "when this version takes over (default now; not in the past)"},
    )
    note = fields.String(load_default="", validate=validate.Length(max=500))
    entries = fields.List(fields.Nested(PolicyEntryIn), required=True, validate=validate.Length(min=1, max=50))

    @validates_schema
    def _distinct(self, data: dict[str, Any], **_: Any) -> None:
        seen: set[int] = set()
        for entry in data.get("entries") or ():
            if entry["branch_id"] in seen:
                raise ValidationError(f"branch {entry['branch_id']} is named twice", "entries")
            seen.add(entry["branch_id"])


class PolicyEntry(Schema):
    branch_id = fields.Integer(required=True)
    branch = fields.String(required=True)
    team_id = fields.Integer(required=True)
    weight = fields.Integer(required=True)
    daily_cap = fields.Integer(allow_none=True, required=True)


class Policy(Schema):
    id = fields.Integer(required=True)
    source = fields.String(allow_none=True, required=True)
    version = fields.Integer(required=True)
    effective_from = LocalTime(required=True)
    effective_to = LocalTime(allow_none=True, required=True)
    note = fields.String(required=True)
    entries = fields.List(fields.Nested(PolicyEntry), required=True)
    allocated = fields.Integer(required=True, metadata={"description": "leads divided by this version so far"})
    created_by = fields.Integer(allow_none=True, required=True)
    created_at = LocalTime(required=True)


PolicyPage = page_of(Policy, "PolicyPage")


class PolicyListArgs(PageArgs):
    source = fields.String(
        validate=validate.Length(max=100),
        metadata={"description": "only this source's versions; empty: the default policy's"},
    )


class PreviewArgs(Schema):
    n = fields.Integer(load_default=10, validate=validate.Range(min=1, max=1000))


class PreviewStep(Schema):
    seq = fields.Integer(required=True)
    branch_id = fields.Integer(allow_none=True, required=True)
    branch = fields.String(allow_none=True, required=True)
    team_id = fields.Integer(allow_none=True, required=True)
    reason = fields.String(required=True)


class PolicyPreview(Schema):
    policy_id = fields.Integer(required=True)
    version = fields.Integer(required=True)
    items = fields.List(fields.Nested(PreviewStep), required=True)


class Allocation(Schema):
    id = fields.Integer(required=True)
    lead_id = fields.Integer(allow_none=True, required=True,
                            metadata={"description": "null until the lead is written, or if it merged instead"})
    policy_id = fields.Integer(required=True)
    version = fields.Integer(required=True)
    seq = fields.Integer(required=True, metadata={"description": "position in the policy version's log"})
    branch_id = fields.Integer(allow_none=True, required=True)
    team_id = fields.Integer(allow_none=True, required=True)
    reason = fields.String(required=True)
    at = LocalTime(required=True)


AllocationPage = page_of(Allocation, "AllocationPage")


class AllocationListArgs(PageArgs):
    lead_id = _qid()
    branch_id = _qid()
    policy_id = _qid()


# --- money: settings, rules, plans, credits, entries, periods, statements ---------------------

from decimal import Decimal  # noqa: E402

from pelago.plugin import MoneyString  # noqa: E402

from .periods import parse_key  # noqa: E402
from .tiers import MODES, SCOPES, tiers_of  # noqa: E402

SITUATIONS = ("first_purchase", "repurchase", "referral", "walk_in")
METHODS = ("owner_at_win", "first_owner", "split")
SPLIT_ROLES = ("closer", "first_owner", "previous_owner", "inviter")
PLAN_ROLES = ("admin", "manager", "rep")
HUNDRED = Decimal(100)


class DecimalString(fields.String):
    """A decimal *string* in JSON (``"0.05"``, ``"33.3333"``), loaded as ``Decimal``, range- and place-checked.

    Never a JSON number: a float may already have lost digits.
    """

    def __init__(self, *, low: Decimal, high: Decimal, places: int, what: str, **kw: Any) -> None:
        kw.setdefault("metadata", {})
        kw["metadata"] = {"pattern": MoneyString.PATTERN.pattern, **kw["metadata"]}
        super().__init__(**kw)
        self.low, self.high, self.places, self.what = low, high, places, what

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or not MoneyString.PATTERN.match(value):
            raise ValidationError(f'send {self.what} as a decimal string, e.g. "{"50" if self.high > 1 else "0.05"}"')
        number = Decimal(value)
        if not self.low <= number <= self.high:
            raise ValidationError(f"must be between {self.low} and {self.high}")
        if -number.as_tuple().exponent > self.places:  # type: ignore[operator]
            raise ValidationError(f"at most {self.places} decimal places")
        return number

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else str(value)


def Percent(**kw: Any) -> DecimalString:  # noqa: N802 - a field factory, used like a field class
    """A percentage, 0.0001 to 100, as a decimal string (``"50"``, ``"33.3333"``)."""
    return DecimalString(low=Decimal("0.0001"), high=HUNDRED, places=4, what="percentages", **kw)


def Rate(**kw: Any) -> DecimalString:  # noqa: N802
    """A rate, 0 to 1, as a decimal string (``"0.05"`` is 5 %)."""
    return DecimalString(low=Decimal(0), high=Decimal(1), places=6, what="rates", **kw)


def _hundred(items: list[dict[str, Any]], field: str) -> None:
    total = sum((Decimal(x["percent"]) for x in items), Decimal(0))
    if total != HUNDRED:
        raise ValidationError({field: [f"percentages must add up to exactly 100, not {total}"]})


class RuleSplit(Schema):
    role = fields.String(required=True, validate=validate.OneOf(SPLIT_ROLES))
    percent = Percent(required=True)


class RuleCreate(Schema):
    situation = fields.String(required=True, validate=validate.OneOf(SITUATIONS))
    method = fields.String(required=True, validate=validate.OneOf(METHODS))
    splits = fields.List(fields.Nested(RuleSplit), load_default=list, validate=validate.Length(max=20),
                         metadata={"description": "method split only: roles and percentages adding up to 100"})
    effective_from = LocalTime(required=True)
    note = fields.String(load_default="", validate=validate.Length(max=500))

    @validates_schema
    def _splits(self, data: dict[str, Any], **_: Any) -> None:
        if data["method"] == "split":
            if not data["splits"]:
                raise ValidationError({"splits": ["method split needs its splits"]})
            _hundred(data["splits"], "splits")
            roles = [x["role"] for x in data["splits"]]
            if len(roles) != len(set(roles)):
                raise ValidationError({"splits": ["each role at most once"]})
        elif data["splits"]:
            raise ValidationError({"splits": [f"method {data['method']} takes no splits"]})


class AttributionRule(Schema):
    id = fields.Integer(required=True)
    situation = fields.String(required=True)
    version = fields.Integer(required=True)
    method = fields.String(required=True)
    splits = fields.List(fields.Nested(RuleSplit), required=True)
    effective_from = LocalTime(required=True)
    effective_to = LocalTime(required=True, allow_none=True)
    note = fields.String(required=True)
    created_by = fields.Integer(required=True, allow_none=True)
    created_at = LocalTime(required=True)


class RuleListArgs(PageArgs):
    situation = fields.String(validate=validate.OneOf(SITUATIONS))


RulePage = page_of(AttributionRule, "RulePage")


class RateTier(Schema):
    up_to = MoneyString(required=True, allow_none=True, as_string=True,
                        metadata={"description": "inclusive ceiling; null on the last tier"})
    rate = Rate(required=True, metadata={"description": "a fraction: \"0.05\" is 5 %"})


class PlanCreate(Schema):
    branch_id = _id(required=True)
    role = fields.String(required=True, validate=validate.OneOf(PLAN_ROLES))
    mode = fields.String(required=True, validate=validate.OneOf(MODES),
                         metadata={"description": "step: the whole amount at its tier's rate; marginal: each slice at its own"})
    scope = fields.String(required=True, validate=validate.OneOf(SCOPES),
                          metadata={"description": "deal: each deal alone; period: cumulative in the period, trued up at the lock"})
    base = fields.String(load_default="net", validate=validate.OneOf(("net", "gross")),
                         metadata={"description": "net: refunds claw commission back; gross: they do not"})
    tiers = fields.List(fields.Nested(RateTier), required=True, validate=validate.Length(min=1, max=50))
    effective_from = LocalTime(required=True)
    note = fields.String(load_default="", validate=validate.Length(max=500))

    @validates_schema
    def _tiers(self, data: dict[str, Any], **_: Any) -> None:
        try:
            tiers_of(data["tiers"])
        except ValueError as exc:
            raise ValidationError({"tiers": [str(exc)]}) from None


class CommissionPlan(Schema):
    id = fields.Integer(required=True)
    branch_id = fields.Integer(required=True)
    role = fields.String(required=True)
    version = fields.Integer(required=True)
    mode = fields.String(required=True)
    scope = fields.String(required=True)
    base = fields.String(required=True)
    tiers = fields.List(fields.Nested(RateTier), required=True)
    effective_from = LocalTime(required=True)
    effective_to = LocalTime(required=True, allow_none=True)
    note = fields.String(required=True)
    created_by = fields.Integer(required=True, allow_none=True)
    created_at = LocalTime(required=True)


class PlanListArgs(PageArgs):
    branch_id = _qid()
    role = fields.String(validate=validate.OneOf(PLAN_ROLES))


PlanPage = page_of(CommissionPlan, "PlanPage")


class OverrideLine(Schema):
    branch_id = _id(required=True)
    user_id = _id(load_default=None, allow_none=True)
    percent = Percent(required=True)


class CreditOverride(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
    lines = fields.List(fields.Nested(OverrideLine), required=True, validate=validate.Length(min=1, max=50))

    @validates_schema
    def _lines(self, data: dict[str, Any], **_: Any) -> None:
        _hundred(data["lines"], "lines")
        keys = [(x["branch_id"], x.get("user_id")) for x in data["lines"]]
        if len(keys) != len(set(keys)):
            raise ValidationError({"lines": ["each (branch, user) at most once"]})


class CreditLineOut(Schema):
    id = fields.Integer(required=True)
    branch_id = fields.Integer(required=True)
    user_id = fields.Integer(required=True, allow_none=True)
    roles = fields.List(fields.String(), required=True)
    percent = fields.String(required=True)
    amount = MoneyString(required=True, as_string=True)
    plan_id = fields.Integer(required=True, allow_none=True)
    commission = MoneyString(required=True, as_string=True, allow_none=True)


class CreditVersion(Schema):
    id = fields.Integer(required=True)
    deal_id = fields.Integer(required=True)
    version = fields.Integer(required=True)
    current = fields.Boolean(required=True)
    situation = fields.String(required=True)
    method = fields.String(required=True)
    rule_id = fields.Integer(required=True, allow_none=True)
    rule_version = fields.Integer(required=True)
    reason = fields.String(required=True)
    inputs = fields.Dict(required=True, metadata={"description": "what the rule used: roles from the ownership ledger"})
    lines = fields.List(fields.Nested(CreditLineOut), required=True)
    created_by = fields.Integer(required=True, allow_none=True)
    created_at = LocalTime(required=True)


class DealCredits(Schema):
    deal_id = fields.Integer(required=True)
    amount = MoneyString(required=True, as_string=True)
    refunded = MoneyString(required=True, as_string=True)
    versions = fields.List(fields.Nested(CreditVersion), required=True, metadata={"description": "newest first"})


def _period_key(value: str) -> None:
    try:
        parse_key(value, 1)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class EntryArgs(PageArgs):
    period = fields.String(validate=[validate.Length(max=7), _period_key], metadata={"description": "YYYY-MM"})
    period_id = _qid()
    branch_id = _qid()
    user_id = _qid()
    deal_id = _qid()


class LedgerEntry(Schema):
    id = fields.Integer(required=True)
    key = fields.String(required=True)
    period_id = fields.Integer(required=True)
    period = fields.String(required=True)
    branch_id = fields.Integer(required=True)
    user_id = fields.Integer(required=True, allow_none=True)
    deal_id = fields.Integer(required=True, allow_none=True)
    kind = fields.String(required=True)
    origin = fields.String(required=True)
    origin_id = fields.Integer(required=True)
    amount = MoneyString(required=True, as_string=True)
    base = MoneyString(required=True, as_string=True)
    plan_id = fields.Integer(required=True, allow_none=True)
    line_id = fields.Integer(required=True, allow_none=True)
    original_id = fields.Integer(required=True, allow_none=True)
    adjusts_period_id = fields.Integer(required=True, allow_none=True)
    occurred_at = LocalTime(required=True)
    created_at = LocalTime(required=True)


EntryPage = page_of(LedgerEntry, "EntryPage")


class PeriodArgs(PageArgs):
    key = fields.String(validate=[validate.Length(max=7), _period_key], metadata={"description": "YYYY-MM"})
    branch_id = _qid()
    state = fields.String(validate=validate.OneOf(("open", "locked", "paid")))


class SettlementPeriod(Schema):
    id = fields.Integer(required=True)
    branch_id = fields.Integer(required=True)
    key = fields.String(required=True)
    starts_at = LocalTime(required=True)
    ends_at = LocalTime(required=True)
    state = fields.String(required=True)
    totals = fields.Dict(required=True, allow_none=True)
    checksum = fields.String(required=True, allow_none=True)
    locked_at = LocalTime(required=True, allow_none=True)
    locked_by = fields.Integer(required=True, allow_none=True)
    paid_at = LocalTime(required=True, allow_none=True)
    paid_by = fields.Integer(required=True, allow_none=True)


PeriodPage = page_of(SettlementPeriod, "PeriodPage")


class LockArgs(Schema):
    period = fields.String(required=True, validate=[validate.Length(max=7), _period_key],
                           metadata={"description": "YYYY-MM: that period of every branch (or of branch_id)"})
    branch_id = _id(load_default=None, allow_none=True)


class PeriodList(Schema):
    items = fields.List(fields.Nested(SettlementPeriod), required=True)


class StatementArgs(Schema):
    period = fields.String(load_default=None, validate=[validate.Length(max=7), _period_key],
                           metadata={"description": "YYYY-MM; default: the period that contains now"})


class StatementTotals(Schema):
    credited = fields.String(required=True)
    won = fields.String(required=True)
    refunded = fields.String(required=True)
    overridden = fields.String(required=True)
    commission = fields.String(required=True)
    clawed_back = fields.String(required=True)
    true_up = fields.String(required=True)
    adjustments = fields.String(required=True)
    entries = fields.Integer(required=True)


class StatementLine(StatementTotals):
    user_id = fields.Integer(required=True, allow_none=True)


class BranchStatement(Schema):
    period = fields.Nested(SettlementPeriod, required=True)
    branch = fields.Nested(StatementTotals, required=True)
    users = fields.List(fields.Nested(StatementLine), required=True)


class UserStatement(Schema):
    user_id = fields.Integer(required=True)
    period = fields.String(required=True)
    periods = fields.List(fields.Nested(SettlementPeriod), required=True, metadata={"description": "that period of each branch"})
    totals = fields.Nested(StatementTotals, required=True)
    entries = fields.List(fields.Nested(LedgerEntry), required=True)
