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
