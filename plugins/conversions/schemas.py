"""Marshmallow schemas: the plugin's settings, and the API's input and output.

Every value is range-checked, so bad input is a 422 naming the field and
never reaches the database.
"""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

from marshmallow import Schema, ValidationError, fields, missing, post_load, validate, validates_schema

from pelago.plugin import ListArgs, LocalTime, MoneyString, OutboundURL

from .models import MOMENTS, STATUSES

#: The touch columns the funnel report can group by.
DIMENSIONS = ("channel", "source", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
MAX_WINDOW_DAYS = 365


def _id(**kw: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=2**63 - 1), **kw)


def _qid(**kw: Any) -> fields.Integer:
    return fields.Integer(validate=validate.Range(min=1, max=2**63 - 1), **kw)


class Settings(Schema):
    """The tenant's settings of the sender."""

    batch = fields.Integer(
        strict=True, load_default=100, validate=validate.Range(min=1, max=1000),
        metadata={"description": "conversions a worker claims per transaction"},
    )
    lease_seconds = fields.Integer(
        strict=True, load_default=300, validate=validate.Range(min=30, max=86400),
        metadata={"description": "how long a claimed conversion is a worker's; past it the worker counts as dead"},
    )
    max_attempts = fields.Integer(
        strict=True, load_default=8, validate=validate.Range(min=1, max=50),
        metadata={"description": "sends tried on transient errors (network, 5xx, 429) before a conversion fails"},
    )
    timeout_seconds = fields.Integer(
        strict=True, load_default=10, validate=validate.Range(min=1, max=60),
        metadata={"description": "seconds to wait for a platform's answer"},
    )


class ConversionsAccountIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    adapter = fields.String(
        required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,39}$"),
        metadata={"description": "an adapter that is on for the tenant: `generic` or one a plugin adds"},
    )
    url = OutboundURL(load_default="", validate=validate.Length(max=500),
                      metadata={"description": "the endpoint (required by `generic`; others have a default)"})
    config = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=100)),
                         values=fields.String(validate=validate.Length(max=500)),
                         load_default=dict, validate=validate.Length(max=30),
                         metadata={"description": "the adapter's non-secret fields (text values)"})
    secret = fields.String(load_default="", validate=validate.Length(max=2000), load_only=True,
                           metadata={"description": "the token or signing key; encrypted at rest, never shown"})
    in_doubt = fields.String(load_default="hold", validate=validate.OneOf(("hold", "resend")),
                             metadata={"description": "a conversion whose sender died mid-request: `hold` it "
                                                      "for a user, or `resend` it with the same idempotency key"})


def _patch_of(base: type[Schema], name: str) -> type[Schema]:
    """``base`` with every field optional and no defaults: a PATCH changes only what it sends."""
    declared: dict[str, Any] = {}
    for key, f in base._declared_fields.items():
        g = copy.copy(f)
        g.required = False
        g.load_default = missing
        declared[key] = g
    return Schema.from_dict(declared, name=name)


ConversionsAccountPatch = _patch_of(ConversionsAccountIn, "ConversionsAccountPatch")


class ConversionsAdapter(Schema):
    name = fields.String(required=True)
    title = fields.String(required=True)
    config = fields.List(fields.String(), required=True, metadata={"description": "config keys an account needs"})
    needs_url = fields.Boolean(required=True)
    needs_secret = fields.Boolean(required=True)
    idempotent = fields.Boolean(required=True, metadata={"description": "the platform deduplicates a resend"})
    personal = fields.List(fields.String(), required=True,
                           metadata={"description": "hashed personal data it sends (e.g. `phone_sha256`)"})


class ConversionsAdapterList(Schema):
    items = fields.List(fields.Nested(ConversionsAdapter), required=True)


class ConversionsAccountOut(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    adapter = fields.String(required=True)
    url = fields.String(required=True)
    config = fields.Dict(required=True)
    has_secret = fields.Boolean(required=True)
    in_doubt = fields.String(required=True)
    created_at = LocalTime(required=True)


class ConversionsAccountList(Schema):
    items = fields.List(fields.Nested(ConversionsAccountOut), required=True)


class ConversionsRuleIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    account_id = _id(required=True)
    match = fields.String(load_default="channel", validate=validate.OneOf(("channel", "source")),
                          metadata={"description": "match the touch's `channel` (default) or its `source`"})
    channel = fields.String(required=True, validate=validate.Length(min=1, max=100),
                            metadata={"description": "the channel (or source) whose leads this rule reports"})
    moment = fields.String(required=True, validate=validate.OneOf(MOMENTS),
                           metadata={"description": "the lifecycle moment: " + ", ".join(MOMENTS)})
    event_type = fields.String(required=True, validate=validate.Length(min=1, max=100),
                               metadata={"description": "what the platform calls it (its event type code)"})
    window_days = fields.Integer(strict=True, load_default=30, validate=validate.Range(min=1, max=MAX_WINDOW_DAYS),
                                 metadata={"description": "a click older than this when the moment happens "
                                                          "is not reported (expired)"})
    click_key = fields.String(load_default="click_id", validate=validate.Regexp(r"^[A-Za-z0-9_.\-]{1,100}$"),
                              metadata={"description": "`click_id` (the touch's column) or a dotted path in "
                                                       "the raw submission, e.g. `ad.callback`"})
    touch = fields.String(load_default="last", validate=validate.OneOf(("first", "last")),
                          metadata={"description": "which of a merged lead's matching clicks is reported"})
    send_value = fields.Boolean(load_default=True,
                                metadata={"description": "send the deal's value, net of refunds (`deal_won`)"})
    active = fields.Boolean(load_default=True)


ConversionsRulePatch = _patch_of(ConversionsRuleIn, "ConversionsRulePatch")


class ConversionsRuleOut(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    account_id = fields.Integer(required=True)
    match = fields.String(required=True)
    channel = fields.String(required=True)
    moment = fields.String(required=True)
    event_type = fields.String(required=True)
    window_days = fields.Integer(required=True)
    click_key = fields.String(required=True)
    touch = fields.String(required=True)
    send_value = fields.Boolean(required=True)
    active = fields.Boolean(required=True)
    created_at = LocalTime(required=True)


class ConversionsRuleList(Schema):
    items = fields.List(fields.Nested(ConversionsRuleOut), required=True)


class ConversionsArgs(ListArgs):
    lead_id = _qid()
    rule_id = _qid()
    channel = fields.String(validate=validate.Length(min=1, max=100))
    status = fields.String(validate=validate.OneOf(STATUSES))


class ConversionsOut(Schema):
    id = fields.Integer(required=True)
    rule_id = fields.Integer(required=True)
    lead_id = fields.Integer(required=True)
    touch_id = fields.Integer(allow_none=True, required=True)
    deal_id = fields.Integer(allow_none=True, required=True)
    channel = fields.String(required=True)
    moment = fields.String(required=True)
    event_type = fields.String(required=True)
    click_id = fields.String(required=True)
    clicked_at = LocalTime(required=True)
    occurred_at = LocalTime(required=True)
    value = MoneyString(allow_none=True, required=True, as_string=True)
    currency = fields.String(allow_none=True, required=True)
    status = fields.String(required=True)
    attempts = fields.Integer(required=True)
    next_attempt_at = LocalTime(required=True)
    message = fields.String(required=True)
    answer_status = fields.Integer(allow_none=True, required=True)
    sent_at = LocalTime(allow_none=True, required=True)
    created_at = LocalTime(required=True)
    updated_at = LocalTime(required=True)


class ConversionsPage(Schema):
    items = fields.List(fields.Nested(ConversionsOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class ConversionsStatusCounts(Schema):
    channel = fields.String(required=True)
    rule_id = fields.Integer(required=True)
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class ConversionsStatusSummary(Schema):
    items = fields.List(fields.Nested(ConversionsStatusCounts), required=True)


class ConversionsDecision(Schema):
    decision = fields.String(required=True, validate=validate.OneOf(("resend", "accepted")),
                             metadata={"description": "`resend`: queue it again now; `accepted`: a user checked "
                                                      "the platform and it has the conversion"})


def _day(**kw: Any) -> fields.Date:
    return fields.Date(validate=validate.Range(min=date(1970, 1, 1), max=date(2999, 12, 31)), **kw)


class ConversionsFunnelArgs(Schema):
    start = _day(required=True, metadata={"description": "first day, in the tenant's timezone"})
    end = _day(required=True, metadata={"description": "last day (included), in the tenant's timezone"})
    group_by = fields.String(
        load_default="channel", validate=validate.Length(min=1, max=200),
        metadata={"description": "comma-separated touch fields: " + ", ".join(DIMENSIONS)},
    )

    @validates_schema
    def _check(self, data: dict[str, Any], **_: Any) -> None:
        if "start" in data and "end" in data:
            if data["end"] < data["start"]:
                raise ValidationError("must not be before start", "end")
            if (data["end"] - data["start"]).days > 3660:
                raise ValidationError("at most ten years", "end")
        names = [n.strip() for n in str(data.get("group_by", "channel")).split(",")]
        unknown = [n for n in names if n not in DIMENSIONS]
        if unknown:
            raise ValidationError(f"unknown field {unknown[0]!r}; one of: {', '.join(DIMENSIONS)}", "group_by")
        if len(set(names)) != len(names):
            raise ValidationError("a field is named twice", "group_by")

    @post_load
    def _split(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["group_by"] = [n.strip() for n in data["group_by"].split(",")]
        return data


class ConversionsFunnelRow(Schema):
    group = fields.Dict(keys=fields.String(), values=fields.String(allow_none=True), required=True)
    leads = fields.Integer(required=True)
    duplicates = fields.Integer(required=True)
    contacted = fields.Integer(required=True)
    qualified = fields.Integer(required=True)
    won = fields.Integer(required=True)
    revenue = fields.String(required=True, metadata={"description": "net of refunds, a decimal string"})
    median_first_contact_seconds = fields.Integer(allow_none=True, required=True)
    conversions_reported = fields.Integer(required=True)
    conversions_accepted = fields.Integer(required=True)
    spend = fields.String(allow_none=True, required=True)
    cost_per_lead = fields.String(allow_none=True, required=True)
    cost_per_deal = fields.String(allow_none=True, required=True)
    return_on_spend = fields.String(allow_none=True, required=True)


class ConversionsFunnel(Schema):
    start = fields.Date(required=True)
    end = fields.Date(required=True)
    timezone = fields.String(required=True)
    currency = fields.String(required=True)
    group_by = fields.List(fields.String(), required=True)
    rows = fields.List(fields.Nested(ConversionsFunnelRow), required=True)
    total = fields.Nested(ConversionsFunnelRow, required=True)


class ConversionsSpendArgs(Schema):
    start = _day(required=True)
    end = _day(required=True)
    channel = fields.String(validate=validate.Length(min=1, max=100))


class ConversionsSpendOut(Schema):
    day = fields.Date(required=True)
    channel = fields.String(required=True)
    campaign = fields.String(required=True)
    amount = fields.String(required=True)


class ConversionsSpendList(Schema):
    items = fields.List(fields.Nested(ConversionsSpendOut), required=True)


class ConversionsSpendUploaded(Schema):
    rows = fields.Integer(required=True)
    days = fields.Integer(required=True)
