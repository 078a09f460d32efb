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
_CURRENCY = validate.Regexp(r"^[A-Z]{3}\Z", error="a three-letter ISO 4217 code in capitals (e.g. CNY)")


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
