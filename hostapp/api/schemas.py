"""Request and response schemas of the core API. Everything has one, so the spec is complete."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from pelago.core.models import ACTIVITY_KINDS, DEAL_KINDS, DELIVERY_STATES, POST_STATES, ROLES, STAGES, STRATEGIES
from pelago.core.money import currency_code
from pelago.core.pagination import MAX_LIMIT
from pelago.core.services.admin import SLUG, SLUG_RULE


def _id(**kw: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=2**63 - 1), **kw)


def _qid(**kw: Any) -> fields.Integer:
    """An id in a query string (a string on the wire, so not strict)."""
    return fields.Integer(validate=validate.Range(min=1, max=2**63 - 1), **kw)


class MoneyString(fields.Decimal):
    """Money is a decimal *string* in JSON: a JSON number may already have lost cents.

    ASCII digits only (``Decimal`` would also read other scripts' digits).
    """

    PATTERN = re.compile(r"^[+-]?[0-9]+(\.[0-9]+)?$")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or not self.PATTERN.match(value):
            raise ValidationError('send amounts as a decimal string, e.g. "1999.00"')
        return super()._deserialize(value, attr, data, **kwargs)


class LocalTime(fields.AwareDateTime):
    """Aware datetimes in (years 1900-2999); out in the tenant's timezone (stored in UTC)."""

    EARLIEST = datetime(1900, 1, 1, tzinfo=timezone.utc)
    LATEST = datetime(3000, 1, 1, tzinfo=timezone.utc)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        parsed = super()._deserialize(value, attr, data, **kwargs)
        try:
            inside = self.EARLIEST <= parsed < self.LATEST
        except OverflowError:
            inside = False
        if not inside:
            raise ValidationError("must be between 1900 and 2999")
        return parsed

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is not None:
            from flask import g, has_request_context

            context = g.get("pelago_ctx") if has_request_context() else None
            if context is not None:
                local = value.astimezone(context.tenant.tz)
                offset = local.utcoffset()
                # Zones' pre-1901 local mean time has offsets in seconds, which
                # RFC 3339 cannot write: answer UTC instead.
                if offset is not None and offset.seconds % 60 == 0:
                    value = local
        return super()._serialize(value, attr, obj, **kwargs)


def _money(**kw: Any) -> fields.Decimal:
    return MoneyString(places=2, rounding=ROUND_HALF_UP, as_string=True, allow_nan=False, **kw)


def page_of(item: type[Schema]) -> type[Schema]:
    """The ``{items, next_cursor}`` envelope of every list, named ``<Item>Page`` in the spec."""
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item), required=True),
            "next_cursor": fields.String(
                allow_none=True, required=True, metadata={"description": "pass as ?cursor= for the next page"}
            ),
        },
        name=f"{item.__name__}Page",
    )


class PageArgs(Schema):
    """A list's query arguments: ``limit`` (1–200, default 50) and the ``cursor`` of the page before."""

    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.String(load_default=None, validate=validate.Length(max=200))


def _currency(value: str) -> None:
    """An ISO 4217 code (``pelago.core.money.CURRENCIES``)."""
    try:
        currency_code(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


# --- leads ---------------------------------------------------------------------


class LeadBase(Schema):
    name = fields.String(validate=validate.Length(max=200))
    phone = fields.String(allow_none=True, validate=validate.Length(max=40))
    email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    source = fields.String(allow_none=True, validate=validate.Length(max=100))
    region = fields.String(allow_none=True, validate=validate.Length(max=100))
    product = fields.String(allow_none=True, validate=validate.Length(max=100))
    attributes = fields.Dict(keys=fields.String(validate=validate.Length(max=100)))


class NewLead(LeadBase):
    """A lead's fields as a creation takes them: a phone or an email is required."""

    @validates_schema
    def _reachable(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("phone") and not data.get("email"):
            raise ValidationError("phone or email is required", "phone")


class LeadCreate(NewLead):
    team_id = _id(allow_none=True)
    owner_id = _id(allow_none=True)
    external_id = fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "the sender's id for this submission; a retry with it is a no-op"},
    )
    utm_source = fields.String(validate=validate.Length(max=200))
    utm_medium = fields.String(validate=validate.Length(max=200))
    utm_campaign = fields.String(validate=validate.Length(max=200))
    utm_term = fields.String(validate=validate.Length(max=200))
    utm_content = fields.String(validate=validate.Length(max=200))
    click_id = fields.String(validate=validate.Length(max=200))


class LeadPatch(LeadBase):
    locked = fields.Boolean()


class Lead(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    phone = fields.String(allow_none=True, required=True)
    email = fields.String(allow_none=True, required=True)
    source = fields.String(allow_none=True)
    region = fields.String(allow_none=True)
    product = fields.String(allow_none=True)
    stage = fields.String(required=True, validate=validate.OneOf(STAGES))
    lost_reason = fields.String(allow_none=True)
    is_customer = fields.Boolean(required=True)
    owner_id = fields.Integer(allow_none=True, required=True)
    team_id = fields.Integer(allow_none=True, required=True)
    locked = fields.Boolean(required=True)
    attributes = fields.Dict()
    created_at = LocalTime(required=True)
    updated_at = LocalTime(required=True)
    assigned_at = LocalTime(allow_none=True)
    stage_changed_at = LocalTime(required=True)
    last_activity_at = LocalTime(allow_none=True)
    version = fields.Integer(required=True)


class LeadIntake(Lead):
    merged = fields.Boolean(required=True, metadata={"description": "folded into an existing lead"})
    replayed = fields.Boolean(required=True, metadata={"description": "a retry of an earlier request"})
    touch_id = fields.Integer(required=True)


class LeadFilter(PageArgs):
    stage = fields.String(validate=validate.OneOf(STAGES))
    owner_id = _qid()
    team_id = _qid()
    unowned = fields.Boolean()
    source = fields.String(validate=validate.Length(max=100))
    created_after = LocalTime()
    created_before = LocalTime()
    q = fields.String(validate=validate.Length(max=200))


LeadPage = page_of(Lead)


class AssignArgs(Schema):
    user_id = _id(required=True, allow_none=True, metadata={"description": "null releases the lead"})
    note = fields.String(load_default="", validate=validate.Length(max=1000))


class StageArgs(Schema):
    stage = fields.String(required=True, validate=validate.OneOf(STAGES))
    lost_reason = fields.String(allow_none=True, validate=validate.Length(max=500))

    @validates_schema
    def _lost_needs_reason(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("stage") == "lost" and not (data.get("lost_reason") or "").strip():
            raise ValidationError("required when stage is lost", "lost_reason")


class ActivityArgs(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(ACTIVITY_KINDS))
    note = fields.String(load_default="", validate=validate.Length(max=10_000))
    occurred_at = LocalTime()


class Activity(Schema):
    id = fields.Integer(required=True)
    lead_id = fields.Integer(required=True)
    user_id = fields.Integer(allow_none=True)
    kind = fields.String(required=True)
    note = fields.String(required=True)
    occurred_at = LocalTime(required=True)
    created_at = LocalTime(required=True)


ActivityPage = page_of(Activity)


class Touch(Schema):
    """One submission that made or reached the lead, with its attribution."""

    id = fields.Integer(required=True)
    lead_id = fields.Integer(required=True)
    channel = fields.String(allow_none=True, required=True, metadata={
        "description": "api, import, a webhook channel's name, or a plugin's"})
    source = fields.String(allow_none=True, required=True)
    utm_source = fields.String(allow_none=True, required=True)
    utm_medium = fields.String(allow_none=True, required=True)
    utm_campaign = fields.String(allow_none=True, required=True)
    utm_term = fields.String(allow_none=True, required=True)
    utm_content = fields.String(allow_none=True, required=True)
    click_id = fields.String(allow_none=True, required=True)
    merged = fields.Boolean(required=True, metadata={"description": "folded into a lead that existed"})
    received_at = LocalTime(required=True)


TouchPage = page_of(Touch)


class HistoryArgs(Schema):
    include = fields.List(
        fields.String(validate=validate.OneOf(("plugins",))), load_default=list,
        metadata={"description": "`plugins`: also the entries of the plugins on for the tenant (`type` `plugin`)"},
    )


class HistoryItem(Schema):
    type = fields.String(required=True, validate=validate.OneOf(("ownership", "stage", "activity", "plugin")))
    id = fields.Integer(metadata={"description": "on the core's entries (not `plugin`)"})
    at = LocalTime(required=True)
    actor_id = fields.Integer(allow_none=True)
    from_user_id = fields.Integer(allow_none=True)
    to_user_id = fields.Integer(allow_none=True)
    team_id = fields.Integer(allow_none=True)
    reason = fields.String()
    rule = fields.String(allow_none=True)
    note = fields.String()
    detail = fields.Dict()
    old = fields.String(allow_none=True)
    new = fields.String()
    lost_reason = fields.String(allow_none=True)
    kind = fields.String()
    plugin = fields.String(metadata={"description": "`plugin` entries: the plugin that answered it"})
    title = fields.String(metadata={"description": "`plugin` entries: English, with `values` filled in"})
    # attribute: a core entry (a dict) has no "values" key, and marshmallow would then read dict.values
    values = fields.Dict(attribute="title_values", data_key="values",
                         metadata={"description": "`plugin` entries: the values in the title"})
    text = fields.String(metadata={"description": "`plugin` entries: the entry's detail, as the plugin wrote it"})


class History(Schema):
    items = fields.List(fields.Nested(HistoryItem), required=True)


# --- deals -------------------------------------------------------------------


class DealArgs(Schema):
    amount = _money(required=True, metadata={"description": "a decimal string, e.g. \"1999.00\""})
    currency = fields.String(validate=_currency, metadata={"description": "an ISO 4217 code; default: the tenant's"})
    product = fields.String(load_default="", validate=validate.Length(max=200))
    kind = fields.String(validate=validate.OneOf(DEAL_KINDS))


class Deal(Schema):
    id = fields.Integer(required=True)
    lead_id = fields.Integer(required=True)
    owner_id = fields.Integer(allow_none=True)
    team_id = fields.Integer(allow_none=True)
    amount = _money(required=True)
    refunded = _money(required=True)
    currency = fields.String(required=True)
    product = fields.String(required=True)
    kind = fields.String(required=True)
    won_at = LocalTime(required=True)


class DealFilter(PageArgs):
    lead_id = _qid()
    owner_id = _qid()
    kind = fields.String(validate=validate.OneOf(DEAL_KINDS))


DealPage = page_of(Deal)


class RefundArgs(Schema):
    amount = _money(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class Refund(Schema):
    id = fields.Integer(required=True)
    deal_id = fields.Integer(required=True)
    amount = _money(required=True)
    reason = fields.String(required=True)
    created_at = LocalTime(required=True)


# --- administration --------------------------------------------------------------


class UserArgs(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    name = fields.String(load_default="", validate=validate.Length(max=200))
    role = fields.String(required=True, validate=validate.OneOf([r for r in ROLES if r != "operator"]))
    team_id = _id(allow_none=True)
    password = fields.String(load_only=True, validate=validate.Length(min=8, max=200))


class WorkingHours(Schema):
    """``{"days": [1..7] (ISO weekdays, default every day), "start": "09:00", "end": "18:00"}``.

    Read in the tenant's timezone; an end before the start is a night shift.
    """

    days = fields.List(fields.Integer(validate=validate.Range(min=1, max=7)),
                       load_default=[1, 2, 3, 4, 5, 6, 7], validate=validate.Length(min=1, max=7))
    start = fields.String(required=True, validate=validate.Regexp(r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))
    end = fields.String(required=True, validate=validate.Regexp(r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("start") == data.get("end"):
            raise ValidationError("start and end must differ", "end")


class UserPatch(Schema):
    name = fields.String(validate=validate.Length(max=200))
    role = fields.String(validate=validate.OneOf([r for r in ROLES if r != "operator"]))
    team_id = _id(allow_none=True)
    active = fields.Boolean()
    on_leave = fields.Boolean()
    password = fields.String(load_only=True, validate=validate.Length(min=8, max=200))
    daily_capacity = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=100000),
                                    metadata={"description": "leads routing may give per day; null = no cap"})
    weight = fields.Integer(validate=validate.Range(min=1, max=1000),
                            metadata={"description": "share under the weighted strategy"})
    working_hours = fields.Nested(WorkingHours, allow_none=True)


class User(Schema):
    id = fields.Integer(required=True)
    email = fields.String(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True)
    team_id = fields.Integer(allow_none=True)
    active = fields.Boolean(required=True)
    on_leave = fields.Boolean(required=True)
    daily_capacity = fields.Integer(allow_none=True)
    weight = fields.Integer(required=True)
    working_hours = fields.Dict(allow_none=True)
    created_at = LocalTime(required=True)


UserPage = page_of(User)


class TeamArgs(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(load_default="", validate=validate.Length(max=1000))
    strategy = fields.String(load_default="round_robin", validate=validate.OneOf(STRATEGIES))


class TeamPatch(Schema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(validate=validate.Length(max=1000))
    active = fields.Boolean()
    strategy = fields.String(validate=validate.OneOf(STRATEGIES))


class Team(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    active = fields.Boolean(required=True)
    strategy = fields.String(required=True)
    rr_pointer = fields.Integer(allow_none=True, metadata={"description": "round robin: last assigned user"})
    created_at = LocalTime(required=True)


TeamPage = page_of(Team)


class ApiKeyArgs(Schema):
    user_id = _id(metadata={"description": "admins may create keys for others; default: yourself"})
    name = fields.String(load_default="", validate=validate.Length(max=200))


class ApiKey(Schema):
    id = fields.Integer(required=True)
    user_id = fields.Integer(required=True)
    name = fields.String(required=True)
    prefix = fields.String(required=True)
    created_at = LocalTime(required=True)
    revoked_at = LocalTime(allow_none=True)


class ApiKeyCreated(ApiKey):
    key = fields.String(required=True, metadata={"description": "shown once; store it now"})


ApiKeyPage = page_of(ApiKey)


# --- plugins and tenants -------------------------------------------------------------


class Plugin(Schema):
    name = fields.String(required=True)
    title = fields.String(required=True)
    description = fields.String(required=True)
    version = fields.String(required=True)
    requires = fields.List(fields.String(), required=True)
    enabled = fields.Boolean(required=True)
    settings = fields.Dict(required=True, metadata={"description": "secrets are masked"})
    updated_at = LocalTime(allow_none=True)
    updated_by = fields.Integer(allow_none=True)


class PluginList(Schema):
    items = fields.List(fields.Nested(Plugin), required=True)
    failed = fields.List(fields.Dict(), required=True, metadata={"description": "deployed but failed to load"})


class PluginArgs(Schema):
    enabled = fields.Boolean()
    settings = fields.Dict(keys=fields.String())


class TenantArgs(Schema):
    slug = fields.String(required=True, validate=validate.Regexp(SLUG, error=SLUG_RULE))
    name = fields.String(validate=validate.Length(min=1, max=200))
    timezone = fields.String(load_default="Asia/Shanghai", validate=validate.Length(max=64))
    default_region = fields.String(load_default="CN", validate=validate.Regexp(r"^[A-Za-z]{2}$"))
    currency = fields.String(load_default="CNY", validate=_currency, metadata={"description": "an ISO 4217 code"})


class Tenant(Schema):
    id = fields.Integer(required=True)
    slug = fields.String(required=True)
    name = fields.String(required=True)
    timezone = fields.String(required=True)
    default_region = fields.String(required=True)
    currency = fields.String(required=True)
    created_at = LocalTime(required=True)


TenantPage = page_of(Tenant)


class DeliveryFilter(PageArgs):
    state = fields.String(validate=validate.OneOf(DELIVERY_STATES))
    plugin = fields.String(validate=validate.Length(max=64))


class Delivery(Schema):
    id = fields.Integer(required=True)
    event_id = fields.Integer(required=True)
    event = fields.String(required=True)
    plugin = fields.String(required=True)
    state = fields.String(required=True)
    attempts = fields.Integer(required=True)
    last_error = fields.String(allow_none=True)
    next_attempt_at = LocalTime(allow_none=True)
    delivered_at = LocalTime(allow_none=True)


DeliveryPage = page_of(Delivery)


class PostFilter(PageArgs):
    status = fields.String(validate=validate.OneOf(POST_STATES))
    plugin = fields.String(validate=validate.Length(max=64))


class OutboundPost(Schema):
    id = fields.Integer(required=True)
    plugin = fields.String(required=True)
    url = fields.String(required=True)
    event_id = fields.Integer(allow_none=True)
    status = fields.String(required=True)
    attempts = fields.Integer(required=True)
    answer_status = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    next_attempt_at = LocalTime(allow_none=True)
    created_at = LocalTime(required=True)
    sent_at = LocalTime(allow_none=True)


OutboundPostPage = page_of(OutboundPost)


# --- routing ----------------------------------------------------------------------


class RoutingSettingsPatch(Schema):
    auto_routing = fields.Boolean(metadata={"description": "route new leads by rules and the default team"})
    default_team_id = _id(allow_none=True, metadata={"description": "where leads no rule matches go"})
    handoff_enabled = fields.Boolean(metadata={"description": "move first-purchase customers on a win"})
    repurchase_team_id = _id(allow_none=True)


class RoutingSettings(Schema):
    auto_routing = fields.Boolean(required=True)
    default_team_id = fields.Integer(allow_none=True, required=True)
    handoff_enabled = fields.Boolean(required=True)
    repurchase_team_id = fields.Integer(allow_none=True, required=True)


def _match_values() -> fields.List:
    return fields.List(
        fields.String(validate=validate.Length(min=1, max=100)), validate=validate.Length(min=1, max=100)
    )


class RuleMatch(Schema):
    """Every key given must match (AND); any of its values may (OR)."""

    channel = _match_values()
    source = _match_values()
    region = _match_values()
    product = _match_values()


class RuleArgs(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    priority = fields.Integer(strict=True, load_default=100, validate=validate.Range(min=0, max=1_000_000),
                              metadata={"description": "lower runs first"})
    active = fields.Boolean(load_default=True)
    match = fields.Nested(RuleMatch, load_default=dict)
    team_id = _id(required=True)


class RulePatch(Schema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    priority = fields.Integer(strict=True, validate=validate.Range(min=0, max=1_000_000))
    active = fields.Boolean()
    match = fields.Nested(RuleMatch)
    team_id = _id()


class Rule(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    priority = fields.Integer(required=True)
    active = fields.Boolean(required=True)
    match = fields.Dict(required=True)
    team_id = fields.Integer(required=True)
    created_at = LocalTime(required=True)


class RuleList(Schema):
    items = fields.List(fields.Nested(Rule), required=True)


class PreviewArgs(LeadBase):
    channel = fields.String(allow_none=True, validate=validate.Length(max=100))
    team_id = _id(allow_none=True)


class Preview(Schema):
    duplicate_of = fields.Integer(allow_none=True, required=True,
                                  metadata={"description": "the lead this submission would merge into"})
    team_id = fields.Integer(allow_none=True, required=True)
    owner_id = fields.Integer(allow_none=True, required=True)
    rule = fields.String(allow_none=True, required=True)
    explanation = fields.Dict(required=True)
