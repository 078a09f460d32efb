"""Marshmallow schemas: the tenant's settings, and the API's input and output.

Everything is range-checked on the way in, so a bad value is a 422 naming the
field and nothing is written: a template with an unknown variable, a window
whose end equals its start, a negative delay.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from pelago.plugin import MAX_LIMIT, LocalTime, OutboundURL

from . import text

HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
TRIGGERS = ("manual", "not_contacted", "pool_released", "pool_recycle_due", "lost")
MAX_IDS = 1000


def _hhmm(**kw: Any) -> fields.String:
    return fields.String(validate=validate.Regexp(HHMM, error="a local time HH:MM, 00:00 to 23:59"), **kw)


def _id(**kw: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=2**63 - 1), **kw)


def _qid(**kw: Any) -> fields.Integer:
    return fields.Integer(validate=validate.Range(min=1, max=2**63 - 1), **kw)


def check_window(data: dict[str, Any], start: str, end: str) -> None:
    if data.get(start) is not None and data.get(start) == data.get(end):
        raise ValidationError("a window's end must differ from its start (use 00:00–23:59 for all day)", end)
    if (data.get(start) is None) != (data.get(end) is None) and start in data and end in data:
        raise ValidationError("give both ends of the window, or neither", end)


class Settings(Schema):
    """The tenant's rules. Times are local: the lead's region's timezone, else the tenant's."""

    provider = fields.String(load_default="log", validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,31}$"),
                             metadata={"description": "the provider that sends: log (default), http, or a provider plugin's name"})
    signature = fields.String(load_default="", validate=validate.Length(max=20),
                              metadata={"description": "the tenant's signature, sent as 【signature】 before every text"})
    window_start = _hhmm(load_default="09:00", metadata={"description": "no message is sent before this local time"})
    window_end = _hhmm(load_default="20:00", metadata={"description": "nor after this one (may be earlier than start: the window crosses midnight)"})
    validity_minutes = fields.Integer(strict=True, load_default=240, validate=validate.Range(min=1, max=7 * 24 * 60),
                                      metadata={"description": "a message not sent this long after its planned time is dropped"})
    daily_cap = fields.Integer(strict=True, load_default=1, validate=validate.Range(min=0, max=100),
                               metadata={"description": "most messages to one phone per local day, all sequences"})
    weekly_cap = fields.Integer(strict=True, load_default=3, validate=validate.Range(min=0, max=700),
                                metadata={"description": "most messages to one phone in the last 7 local days"})
    require_consent = fields.Boolean(load_default=True,
                                     metadata={"description": "send only to phones with consent on record"})
    region_timezones = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=100)),
                                   values=fields.String(), load_default=dict, validate=validate.Length(max=500),
                                   metadata={"description": "a lead's region → its IANA timezone, for its quiet hours"})
    batch = fields.Integer(strict=True, load_default=500, validate=validate.Range(min=1, max=2000),
                           metadata={"description": "messages claimed per transaction"})
    lease_seconds = fields.Integer(strict=True, load_default=300, validate=validate.Range(min=10, max=3600),
                                   metadata={"description": "how long a claim holds its messages; a crashed sender's are reconciled after it"})
    http_send_url = OutboundURL(load_default="")
    http_status_url = OutboundURL(load_default="")
    http_secret = fields.String(load_default="", validate=validate.Length(max=200), metadata={"secret": True})

    @validates("region_timezones")
    def _zones(self, value: dict[str, str], **_: Any) -> None:
        bad = sorted(z for z in value.values() if z not in available_timezones())
        if bad:
            raise ValidationError(f"unknown timezones: {', '.join(bad[:5])}")

    @validates_schema
    def _window(self, data: dict[str, Any], **_: Any) -> None:
        check_window(data, "window_start", "window_end")


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


# --- templates ----------------------------------------------------------------------------


class SmsTemplateIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    body = fields.String(required=True, validate=validate.Length(min=1, max=1000))
    provider_template_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=100))

    @validates("body")
    def _variables(self, value: str, **_: Any) -> None:
        try:
            unknown = text.unknown_variables(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        if unknown:
            raise ValidationError(
                f"unknown variables: {', '.join(unknown)} (known: {', '.join(text.VARIABLES)}, attr.KEY)")


class SmsTemplatePatch(SmsTemplateIn):
    name = fields.String(validate=validate.Length(min=1, max=100))
    body = fields.String(validate=validate.Length(min=1, max=1000))
    provider_template_id = fields.String(allow_none=True, validate=validate.Length(max=100))


class SmsTemplate(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    body = fields.String(required=True)
    provider_template_id = fields.String(allow_none=True)
    variables = fields.List(fields.String(), required=True)
    created_at = LocalTime(required=True)
    updated_at = LocalTime(required=True)


class SmsPageArgs(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.String(load_default=None, validate=validate.Length(max=200))


class SmsTemplatePage(Schema):
    items = fields.List(fields.Nested(SmsTemplate), required=True)
    next_cursor = fields.String(allow_none=True)


class SmsPreviewArgs(Schema):
    lead_id = _qid(load_default=None, allow_none=True)
    body = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=1000))


class SmsPreview(Schema):
    text = fields.String(required=True)
    encoding = fields.String(required=True)
    characters = fields.Integer(required=True)
    units = fields.Integer(required=True)
    segments = fields.Integer(required=True)
    per_segment = fields.Integer(required=True)
    unknown_variables = fields.List(fields.String(), required=True)


# --- sequences and steps -------------------------------------------------------------------


class SmsStepIn(Schema):
    template_id = _id(required=True)
    delay_minutes = fields.Integer(strict=True, required=True, validate=validate.Range(min=0, max=366 * 24 * 60))
    delay_from = fields.String(load_default="previous", validate=validate.OneOf(("enrolment", "previous")))
    window_start = _hhmm(load_default=None, allow_none=True)
    window_end = _hhmm(load_default=None, allow_none=True)

    @validates_schema
    def _window(self, data: dict[str, Any], **_: Any) -> None:
        check_window(data, "window_start", "window_end")


class SmsStepPatch(Schema):
    template_id = _id()
    delay_minutes = fields.Integer(strict=True, validate=validate.Range(min=0, max=366 * 24 * 60))
    delay_from = fields.String(validate=validate.OneOf(("enrolment", "previous")))
    window_start = _hhmm(allow_none=True)
    window_end = _hhmm(allow_none=True)

    @validates_schema
    def _window(self, data: dict[str, Any], **_: Any) -> None:
        check_window(data, "window_start", "window_end")


class SmsStep(Schema):
    id = fields.Integer(required=True)
    position = fields.Integer(required=True)
    template_id = fields.Integer(required=True)
    delay_minutes = fields.Integer(required=True)
    delay_from = fields.String(required=True)
    window_start = fields.String(allow_none=True)
    window_end = fields.String(allow_none=True)


class SmsSequenceIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    trigger = fields.String(load_default="manual", validate=validate.OneOf(TRIGGERS))
    trigger_hours = fields.Integer(strict=True, load_default=None, allow_none=True,
                                   validate=validate.Range(min=1, max=24 * 90),
                                   metadata={"description": "not_contacted: hours after creation without a rep's activity"})
    trigger_reasons = fields.List(fields.String(validate=validate.Length(min=1, max=500)), load_default=list,
                                  validate=validate.Length(max=50),
                                  metadata={"description": "lost: the lost reasons that enrol (empty: any)"})
    steps = fields.List(fields.Nested(SmsStepIn), load_default=list, validate=validate.Length(max=50))

    @validates_schema
    def _trigger(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("trigger") == "not_contacted" and not data.get("trigger_hours"):
            raise ValidationError("not_contacted needs trigger_hours", "trigger_hours")


class SmsSequencePatch(Schema):
    name = fields.String(validate=validate.Length(min=1, max=100))
    status = fields.String(validate=validate.OneOf(("active", "paused")))
    trigger = fields.String(validate=validate.OneOf(TRIGGERS))
    trigger_hours = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=24 * 90))
    trigger_reasons = fields.List(fields.String(validate=validate.Length(min=1, max=500)),
                                  validate=validate.Length(max=50))


class SmsSequence(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    status = fields.String(required=True)
    trigger = fields.String(required=True)
    trigger_hours = fields.Integer(allow_none=True)
    trigger_reasons = fields.List(fields.String(), required=True)
    steps = fields.List(fields.Nested(SmsStep), required=True)
    created_at = LocalTime(required=True)
    updated_at = LocalTime(required=True)


class SmsSequencePage(Schema):
    items = fields.List(fields.Nested(SmsSequence), required=True)
    next_cursor = fields.String(allow_none=True)


class SmsStats(Schema):
    sequence_id = fields.Integer(required=True)
    enrolled = fields.Integer(required=True)
    active = fields.Integer(required=True)
    sent = fields.Integer(required=True)
    delivered = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    skipped = fields.Integer(required=True)
    dropped = fields.Integer(required=True)
    replied = fields.Integer(required=True)
    opted_out = fields.Integer(required=True)
    converted = fields.Integer(required=True)


# --- enrolments ---------------------------------------------------------------------------


class SmsLeadFilter(Schema):
    source = fields.String(validate=validate.Length(min=1, max=100))
    stage = fields.String(validate=validate.Length(min=1, max=16))
    owner_id = _id(allow_none=True)
    created_after = fields.AwareDateTime()
    created_before = fields.AwareDateTime()


class SmsEnrolIn(Schema):
    lead_ids = fields.List(_id(), validate=validate.Length(min=1, max=MAX_IDS))
    filter = fields.Nested(SmsLeadFilter)
    pass_key = fields.String(load_default="manual", data_key="pass",
                             validate=validate.Regexp(r"^[A-Za-z0-9_.:@-]{1,40}$"),
                             metadata={"description": "the pass: a lead is enrolled once per (sequence, pass)"})

    @validates_schema
    def _one(self, data: dict[str, Any], **_: Any) -> None:
        if ("lead_ids" in data) == ("filter" in data):
            raise ValidationError("give lead_ids or filter", "lead_ids")


class SmsEnrolResult(Schema):
    enrolled = fields.List(fields.Integer(), required=True)
    refused = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                          metadata={"description": "lead id → why it was not enrolled"})


class SmsEnrolCsvResult(SmsEnrolResult):
    rows = fields.Integer(required=True)


class SmsEnrolmentArgs(SmsPageArgs):
    lead_id = _qid(load_default=None)
    sequence_id = _qid(load_default=None)


class SmsEnrolment(Schema):
    id = fields.Integer(required=True)
    lead_id = fields.Integer(required=True)
    sequence_id = fields.Integer(required=True)
    pass_key = fields.String(required=True, data_key="pass")
    status = fields.String(required=True)
    reason = fields.String(allow_none=True)
    source = fields.String(required=True)
    enrolled_at = LocalTime(required=True)
    ended_at = LocalTime(allow_none=True)
    next_position = fields.Integer(required=True)
    next_due_at = LocalTime(allow_none=True)


class SmsEnrolmentPage(Schema):
    items = fields.List(fields.Nested(SmsEnrolment), required=True)
    next_cursor = fields.String(allow_none=True)


class SmsExitIn(Schema):
    reason = fields.String(load_default="manual", validate=validate.Length(min=1, max=32))


# --- messages -----------------------------------------------------------------------------


class SmsMessageArgs(SmsPageArgs):
    lead_id = _qid(load_default=None)
    sequence_id = _qid(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(
        ("queued", "sending", "sent", "delivered", "failed", "skipped", "dropped")))


class SmsMessage(Schema):
    id = fields.Integer(required=True)
    our_id = fields.String(required=True)
    lead_id = fields.Integer(required=True)
    sequence_id = fields.Integer(required=True)
    enrolment_id = fields.Integer(required=True)
    step_id = fields.Integer(required=True)
    phone = fields.String(allow_none=True)
    status = fields.String(required=True)
    reason = fields.String(allow_none=True)
    planned_at = LocalTime(required=True)
    due_at = LocalTime(required=True)
    expires_at = LocalTime(required=True)
    body = fields.String(allow_none=True)
    segments = fields.Integer(allow_none=True)
    provider = fields.String(allow_none=True)
    provider_id = fields.String(allow_none=True)
    attempts = fields.Integer(required=True)
    sent_at = LocalTime(allow_none=True)
    final_at = LocalTime(allow_none=True)


class SmsMessagePage(Schema):
    items = fields.List(fields.Nested(SmsMessage), required=True)
    next_cursor = fields.String(allow_none=True)


# --- phones: consent and suppression --------------------------------------------------------


class SmsPhoneIn(Schema):
    phone = fields.String(required=True, validate=validate.Length(min=3, max=40))
    source = fields.String(required=True, validate=validate.Length(min=1, max=100),
                           metadata={"description": "where the evidence comes from: a form, a call, a reply"})
    text = fields.String(load_default="", validate=validate.Length(max=1000),
                         metadata={"description": "what was said or ticked, as evidence"})
    at = fields.AwareDateTime(load_default=None, allow_none=True)


class SmsPhoneArgs(SmsPageArgs):
    pass


class SmsPhone(Schema):
    id = fields.Integer(required=True)
    phone = fields.String(required=True)
    consent_at = LocalTime(allow_none=True)
    consent_source = fields.String(allow_none=True)
    consent_text = fields.String(allow_none=True)
    suppressed_at = LocalTime(allow_none=True)
    suppressed_source = fields.String(allow_none=True)
    suppressed_text = fields.String(allow_none=True)


class SmsPhonePage(Schema):
    items = fields.List(fields.Nested(SmsPhone), required=True)
    next_cursor = fields.String(allow_none=True)


class SmsWebhookResult(Schema):
    accepted = fields.Integer(required=True)
    moved = fields.Integer(required=True)


class SmsDispatchResult(Schema):
    sent = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    skipped = fields.Integer(required=True)
    dropped = fields.Integer(required=True)
    deferred = fields.Integer(required=True)
    reconciled = fields.Integer(required=True)
    requeued = fields.Integer(required=True)
    planned = fields.Integer(required=True)
