"""The items of the core's events, as typed dicts: what ``event.items`` holds for each event.

Items are JSON snapshots (ids are ints, money and times strings). A plugin
may add keys to the items of events it causes (the pool adds ``pool_id`` to
``lead_assigned`` and ``lead_released``): ``NotRequired`` marks those.

No ``from __future__ import annotations`` here: with string annotations
Python 3.11 cannot see ``NotRequired`` and counts every key as required
(``__required_keys__``), which a type checker or a test reading them trusts.
"""

from collections.abc import Iterable, Mapping
from typing import Any, NotRequired, TypedDict


class LeadCreated(TypedDict):
    """``lead_created``: the new lead's snapshot; an import adds its ``import_id``."""

    lead_id: int
    name: str
    phone: str | None
    email: str | None
    source: str | None
    stage: str
    owner_id: int | None
    team_id: int | None
    is_customer: bool
    created_at: str
    import_id: NotRequired[int]


class LeadMerged(TypedDict):
    """``lead_merged``: a submission folded into an existing lead; ``filled``: the fields it filled in."""

    lead_id: int
    touch_id: int | None
    matched_on: str
    filled: list[str]


class LeadAssigned(TypedDict):
    """``lead_assigned``: an owner set or changed."""

    lead_id: int
    from_user_id: int | None
    to_user_id: int
    team_id: int | None
    reason: str
    rule: str | None
    pool_id: NotRequired[int]


class LeadReleased(TypedDict):
    """``lead_released``: an owner removed."""

    lead_id: int
    from_user_id: int
    reason: str
    rule: str | None
    pool_id: NotRequired[int]


class LeadStageChanged(TypedDict):
    """``lead_stage_changed``."""

    lead_id: int
    old: str
    new: str
    lost_reason: str | None


class ActivityLogged(TypedDict):
    """``activity_logged``: a follow-up."""

    activity_id: int
    lead_id: int
    kind: str
    user_id: int | None
    occurred_at: str


class DealWon(TypedDict):
    """``deal_won``: ``amount`` is a decimal string in ``currency``; ``won_at`` an ISO 8601 time."""

    deal_id: int
    lead_id: int
    amount: str
    currency: str
    product: str
    kind: str
    owner_id: int | None
    team_id: int | None
    won_at: str


class DealRefunded(TypedDict):
    """``deal_refunded``: ``amount`` is a decimal string."""

    refund_id: int
    deal_id: int
    lead_id: int
    amount: str
    reason: str
    refunded_total: str


class PluginSwitched(TypedDict):
    """``plugin_enabled`` and ``plugin_disabled``."""

    plugin: str


class PluginSettingsChanged(TypedDict):
    """``plugin_settings_changed``: the names of the fields that changed."""

    plugin: str
    changed: list[str]


class PersonErased(TypedDict):
    """``person_erased``: one item per lead of the erased person (the lead row stays, anonymised)."""

    lead_id: int


def erased_lead_ids(items: Iterable[Mapping[str, Any]]) -> list[int]:
    """The lead ids of a ``person_erased`` event's items (``event.items``), distinct and ascending.

    What every plugin's erasure works on, read the same way everywhere (so a
    plugin's ``person_erased`` is ``erase(ctx, erased_lead_ids(event.items))``,
    the same ids its ``privacy_export`` was given); ascending, so handlers
    lock rows in one order.
    """
    return sorted({int(item["lead_id"]) for item in items})
