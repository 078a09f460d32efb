"""Marshmallow schemas: the plugin's settings, and everything its API takes or returns.

``Settings().load({})`` gives the defaults; the host validates a tenant's
settings with it on ``PUT /api/v1/plugins/lead_score`` (a bad value is a 422
naming the field) and masks fields marked ``metadata={"secret": True}``
wherever settings are shown.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from pelago.plugin import ACTIVITY_KINDS, MAX_LIMIT, LocalTime

POINTS = validate.Range(min=-1000, max=1000)


def _points(**kw: object) -> fields.Integer:
    return fields.Integer(strict=True, validate=POINTS, **kw)  # type: ignore[arg-type]


class Settings(Schema):
    """A tenant's scoring rules."""

    source_points = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=100)),
        values=_points(),
        load_default=dict,
        validate=validate.Length(max=200),
        metadata={"description": "points for a lead's source, e.g. {\"referral\": 40}; other sources score 0"},
    )
    activity_points = _points(
        load_default=5, metadata={"description": "points per activity in the window, unless kind_points says otherwise"}
    )
    kind_points = fields.Dict(
        keys=fields.String(validate=validate.OneOf(ACTIVITY_KINDS)),
        values=_points(),
        load_default=dict,
        metadata={"description": "points per activity of that kind, e.g. {\"visit\": 20}"},
    )
    window_days = fields.Integer(
        strict=True,
        load_default=30,
        validate=validate.Range(min=1, max=365),
        metadata={"description": "activities older than this stop counting (scores decay)"},
    )
    hot_threshold = fields.Integer(
        strict=True,
        load_default=50,
        validate=validate.Range(min=0, max=1_000_000),
        metadata={"description": "a lead with at least this score is hot"},
    )
    webhook_secret = fields.String(
        load_default="",
        validate=validate.Length(max=200),
        metadata={
            "secret": True,
            "description": "shared secret for a scoring webhook; stored, never shown (masked)",
        },
    )


class Score(Schema):
    lead_id = fields.Integer(required=True)
    score = fields.Integer(required=True)
    hot = fields.Boolean(required=True, metadata={"description": "score >= the tenant's hot_threshold"})
    activities = fields.Integer(required=True, metadata={"description": "activities counted (inside the window)"})
    updated_at = LocalTime(required=True, metadata={"description": "when the score last changed"})


class TopArgs(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=MAX_LIMIT))
    min_score = fields.Integer(
        load_default=None,
        validate=validate.Range(min=-(2**31), max=2**31 - 1),  # the column is a 32-bit INTEGER
        metadata={"description": "only scores >= this"},
    )


class TopList(Schema):
    items = fields.List(fields.Nested(Score), required=True)
