"""Marshmallow schemas: the tenant's and each pool's settings, and the API's input and output.

``PoolSettings().load({})`` gives a pool that does nothing on its own: no
recycle rule, no limit. Every value is range-checked, so a bad setting is a 422
naming the field and never reaches the database.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from pelago.plugin import MAX_LIMIT, STAGES, LocalTime, NewLeadSchema, OutboundURL

#: the recycle rules, in the order they are tried (the first that matches names the release)
RULES = ("no_followup", "not_won", "stage_stale")
HIDEABLE = ("name", "phone", "email")
MAX_DAYS = 3650
MAX_BATCH_IDS = 100


def _days(**kw: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_DAYS), **kw)


def _id(**kw: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=2**63 - 1), **kw)


def _qid(**kw: Any) -> fields.Integer:
    return fields.Integer(validate=validate.Range(min=1, max=2**63 - 1), **kw)


def _overrides(what: str) -> fields.Dict:
    return fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=100)),
        values=_days(allow_none=True),
        load_default=dict,
        validate=validate.Length(max=200),
        metadata={"description": f"days for leads of that {what}; null exempts them from this rule"},
    )


class RuleSettings(Schema):
    """One recycle rule: a day count, optionally different per lead level or source."""

    days = _days(
        allow_none=True, load_default=None,
        metadata={"description": "recycle after this many calendar days (tenant's timezone); null: off"},
    )
    by_source = _overrides("source")
    by_level = _overrides("level (attributes.level)")


def _rule(description: str) -> fields.Nested:
    return fields.Nested(RuleSettings, load_default=lambda: RuleSettings().load({}),
                         metadata={"description": description})


class RecycleRules(Schema):
    no_followup = _rule("no follow-up activity for N days, counted from the later of the last activity and the claim")
    not_won = _rule("not won within N days of the claim")
    stage_stale = _rule("stage not changed for N days, counted from the later of the last stage change and the claim")


class PoolSettings(Schema):
    """One pool's rules. Days are calendar days in the tenant's timezone."""

    recycle = fields.Nested(RecycleRules, load_default=lambda: RecycleRules().load({}))
    remind_days_before = fields.Integer(
        strict=True, load_default=0, validate=validate.Range(min=0, max=MAX_DAYS),
        metadata={"description": "send pool_recycle_due this many days before a lead is recycled; 0: never"},
    )
    daily_claim_limit = fields.Integer(
        strict=True, allow_none=True, load_default=None, validate=validate.Range(min=0, max=1_000_000),
        metadata={"description": "claims a user may make per day (all pools), when claiming from this pool"},
    )
    cooldown_days = fields.Integer(
        strict=True, load_default=0, validate=validate.Range(min=0, max=MAX_DAYS),
        metadata={"description": "the previous owner may not reclaim a lead for this many days"},
    )
    protect_days = fields.Integer(
        strict=True, load_default=0, validate=validate.Range(min=0, max=MAX_DAYS),
        metadata={"description": "a lead that entered this pool cannot be claimed for this many days"},
    )
    hold_cap = fields.Integer(
        strict=True, allow_none=True, load_default=None, validate=validate.Range(min=0, max=10_000_000),
        metadata={"description": "most leads a member of this pool's team may hold; also limits routing"},
    )
    hold_cap_counts_won = fields.Boolean(
        load_default=False, metadata={"description": "count won customers against hold_cap"}
    )
    hidden_fields = fields.List(
        fields.String(validate=validate.OneOf(HIDEABLE)), load_default=lambda: ["phone", "email"],
        validate=validate.Length(max=len(HIDEABLE)),
        metadata={"description": "contact fields masked in the pool until claimed (pool admins see them)"},
    )
    daily_view_limit = fields.Integer(
        strict=True, allow_none=True, load_default=None, validate=validate.Range(min=1, max=10_000_000),
        metadata={"description": "pool leads a non-admin may be shown per day (anti-scraping)"},
    )


class Settings(Schema):
    """The tenant's pool settings (``PUT /api/v1/plugins/pool``); each pool has its own rules."""

    webhook_url = OutboundURL(
        load_default="", validate=validate.Length(max=2000),
        metadata={"description": "pool events are POSTed here, signed; empty: no webhook"},
    )
    webhook_secret = fields.String(
        load_default="", validate=validate.Length(max=200),
        metadata={"secret": True, "description": "HMAC-SHA256 key of X-Pelago-Signature"},
    )
    sweep_batch = fields.Integer(
        strict=True, load_default=1000, validate=validate.Range(min=100, max=5000),
        metadata={"description": "most leads the sweep releases per transaction"},
    )


# --- pools ----------------------------------------------------------------------


class PoolMember(Schema):
    user_id = _id(required=True)
    role = fields.String(load_default="member", validate=validate.OneOf(("member", "admin")))


class PoolCreate(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    description = fields.String(load_default="", validate=validate.Length(max=1000))
    team_id = _id(allow_none=True, load_default=None,
                  metadata={"description": "the team whose leads this pool recycles (one pool per team)"})
    members = fields.List(fields.Nested(PoolMember), load_default=list, validate=validate.Length(max=1000))
    settings = fields.Dict(load_default=dict, metadata={"description": "see PoolSettings"})


class PoolPatch(Schema):
    name = fields.String(validate=validate.Length(min=1, max=100))
    description = fields.String(validate=validate.Length(max=1000))
    team_id = _id(allow_none=True)
    members = fields.List(fields.Nested(PoolMember), validate=validate.Length(max=1000),
                          metadata={"description": "replaces the named members"})
    settings = fields.Dict(metadata={"description": "merged into the stored settings (each rule whole)"})


class Pool(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    team_id = fields.Integer(allow_none=True, required=True)
    is_default = fields.Boolean(required=True)
    members = fields.List(fields.Nested(PoolMember), required=True)
    settings = fields.Nested(PoolSettings, required=True)
    can_admin = fields.Boolean(required=True, metadata={"description": "whether the caller may distribute from it"})
    created_at = LocalTime(required=True)
    updated_at = LocalTime(required=True)


class PoolPageArgs(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.String(load_default=None, validate=validate.Length(max=200))


def page_of(item: type[Schema], name: str) -> type[Schema]:
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item), required=True),
            "next_cursor": fields.String(allow_none=True, required=True,
                                         metadata={"description": "pass as ?cursor= for the next page"}),
        },
        name=name,
    )


PoolPage = page_of(Pool, "PoolPage")


# --- leads in a pool ---------------------------------------------------------------


#: why a lead is in a pool (``pool_entry.reason``): given back by a user, taken back by the sweep,
#: created into the pool, moved from another pool, imported into it
ENTRY_REASONS = ("released", "recycled", "created", "moved", "imported")


class PoolLeadFilter(PoolPageArgs):
    source = fields.String(validate=validate.Length(max=100))
    stage = fields.String(validate=validate.OneOf(STAGES))
    level = fields.String(validate=validate.Length(max=100))
    region = fields.String(validate=validate.Length(max=100))
    product = fields.String(validate=validate.Length(max=100))
    reason = fields.String(validate=validate.OneOf(ENTRY_REASONS))
    claimable = fields.Boolean(metadata={"description": "only leads the caller could claim now"})
    entered_after = LocalTime()
    entered_before = LocalTime()


class PoolLead(Schema):
    id = fields.Integer(required=True)
    pool_id = fields.Integer(required=True)
    name = fields.String(required=True)
    phone = fields.String(allow_none=True, required=True)
    email = fields.String(allow_none=True, required=True)
    contact_hidden = fields.Boolean(required=True, metadata={"description": "contact fields are masked until claimed"})
    source = fields.String(allow_none=True)
    region = fields.String(allow_none=True)
    product = fields.String(allow_none=True)
    level = fields.String(allow_none=True)
    stage = fields.String(required=True)
    team_id = fields.Integer(allow_none=True)
    created_at = LocalTime(required=True)
    last_activity_at = LocalTime(allow_none=True)
    entered_at = LocalTime(required=True)
    reason = fields.String(required=True, metadata={"description": "how it came: " + ", ".join(ENTRY_REASONS)})
    rule = fields.String(allow_none=True)
    from_user_id = fields.Integer(allow_none=True, metadata={"description": "its last owner"})
    hidden_until = LocalTime(allow_none=True)
    claimable_from = LocalTime(allow_none=True, metadata={
        "description": "when the caller may claim it (protection, cooldown, hiding); null: now"})


PoolLeadPage = page_of(PoolLead, "PoolLeadPage")


class PoolLeadCreate(NewLeadSchema):
    """A new lead straight into the pool (the core's fields; no owner)."""

    note = fields.String(load_default="", validate=validate.Length(max=500))


class PoolLeadCreated(PoolLead):
    merged = fields.Boolean(required=True, metadata={
        "description": "the submission duplicated an existing lead: it was merged, and not moved into the pool"})


# --- actions -------------------------------------------------------------------------


def _lead_ids() -> fields.List:
    return fields.List(_id(), required=True, validate=validate.Length(min=1, max=MAX_BATCH_IDS),
                       metadata={"description": f"1 to {MAX_BATCH_IDS} lead ids"})


class PoolClaimArgs(Schema):
    lead_ids = _lead_ids()
    pool_id = _id(load_default=None, metadata={"description": "claim only from this pool"})


class PoolReleaseArgs(Schema):
    lead_ids = _lead_ids()
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
    pool_id = _id(load_default=None, metadata={"description": "the pool to put them in; default: the lead's team's"})


class PoolDistributeArgs(Schema):
    lead_ids = _lead_ids()
    user_id = _id(required=True)
    note = fields.String(load_default="", validate=validate.Length(max=500))


class PoolMoveArgs(Schema):
    lead_ids = _lead_ids()
    pool_id = _id(required=True, metadata={"description": "the target pool"})
    note = fields.String(load_default="", validate=validate.Length(max=500))


class PoolHideArgs(Schema):
    lead_ids = _lead_ids()
    until = LocalTime(required=True, allow_none=True, metadata={"description": "hidden until then; null unhides"})


class PoolRefused(Schema):
    lead_id = fields.Integer(required=True)
    reason = fields.String(required=True)


class PoolOutcome(Schema):
    done = fields.List(fields.Integer(), required=True, metadata={"description": "lead ids the action applied to"})
    refused = fields.List(fields.Nested(PoolRefused), required=True)


# --- holdings, sweeps ------------------------------------------------------------


class PoolHoldingFilter(PoolPageArgs):
    user_id = _qid(metadata={"description": "whose leads (reps: only their own); default: the caller's (reps), all"})


class PoolHolding(Schema):
    lead_id = fields.Integer(required=True)
    owner_id = fields.Integer(required=True)
    name = fields.String(required=True)
    stage = fields.String(required=True)
    pool_id = fields.Integer(allow_none=True, required=True, metadata={"description": "where it would go"})
    rule = fields.String(allow_none=True, required=True, metadata={"description": "the rule that recycles it first"})
    due_at = LocalTime(allow_none=True, required=True)
    remaining_days = fields.Integer(allow_none=True, required=True, metadata={
        "description": "calendar days left (0: recycled at the next sweep); null: never recycled"})
    exempt = fields.String(allow_none=True, required=True, metadata={"description": "why it is never recycled"})


PoolHoldingPage = page_of(PoolHolding, "PoolHoldingPage")


class PoolPreviewArgs(PoolPageArgs):
    pool_id = _qid()


class PoolPreviewItem(Schema):
    lead_id = fields.Integer(required=True)
    owner_id = fields.Integer(required=True)
    pool_id = fields.Integer(required=True)
    rule = fields.String(required=True)


PoolPreviewPage = page_of(PoolPreviewItem, "PoolPreviewPage")


class PoolSweep(Schema):
    id = fields.Integer(required=True)
    trigger = fields.String(required=True)
    state = fields.String(required=True)
    started_at = LocalTime(required=True)
    finished_at = LocalTime(allow_none=True)
    scanned = fields.Integer(required=True)
    released = fields.Integer(required=True)
    reminded = fields.Integer(required=True)
    vetoed = fields.Integer(required=True)
    batches = fields.Integer(required=True)
    by_rule = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    error = fields.String(allow_none=True)


PoolSweepPage = page_of(PoolSweep, "PoolSweepPage")
