"""Frozen snapshots of core rows: what hooks receive instead of live ORM objects.

A hook that got an ORM object could change it by accident (and the change
would be flushed with the caller's transaction), or hold it after the
session closed. Snapshots are cheap, immutable and safe to keep; a plugin
that must change a core row asks a core-owned operation to do it
(:mod:`pelago.core.ownership`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .models import Lead, Team, User


def frozen(value: Any) -> Any:
    """A read-only deep view of JSON data (dicts as ``MappingProxyType``, lists as tuples), for shared snapshots.

    What a cache hands to every request and thread must not be changed by
    one of them; :func:`pelago.core.events.snapshot` still makes it JSON.
    """
    if isinstance(value, Mapping):
        return MappingProxyType({k: frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(frozen(v) for v in value)
    return value


def _copy(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy: changing it never reaches the row (JSON-ready, unlike a mapping proxy)."""
    return dict(value or {})


@dataclass(frozen=True, slots=True)
class LeadInfo:
    """What routing, ``check_assign`` and ``check_stage_change`` see of a lead.

    ``id`` is ``None`` for a lead not written yet: the hypothetical lead of a
    preview, or a new lead being routed by the intake line. Such a new lead
    has ``new_id``, the id the intake line reserved for it and will insert it
    with, so a plugin can write rows about it (once, in the same batch)
    before the lead's own row exists; a lead that loses a race to a
    concurrent duplicate is merged into that one instead, and its ``new_id``
    is never used. Cheap to build by the hundred thousand, unlike an ORM object.
    """

    id: int | None
    name: str = ""
    phone: str | None = None
    email: str | None = None
    source: str | None = None
    region: str | None = None
    product: str | None = None
    channel: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    team_id: int | None = None
    owner_id: int | None = None
    stage: str = "new"
    is_customer: bool = False
    locked: bool = False
    new_id: int | None = None

    @classmethod
    def of_row(cls, row: Any, owner_id: int | None = None) -> LeadInfo:
        """The snapshot of a result row with the lead's columns (``id, name, phone, email, source,
        region, product, attributes, team_id, stage, is_customer, locked`` and ``owner_id``, or
        ``owner_id=`` given for a row without it): for set-based code that reads rows, not objects."""
        return cls(
            id=row.id, name=row.name, phone=row.phone, email=row.email, source=row.source, region=row.region,
            product=row.product, attributes=_copy(row.attributes), team_id=row.team_id,
            owner_id=row.owner_id if owner_id is None else owner_id,
            stage=row.stage, is_customer=row.is_customer, locked=row.locked,
        )

    @classmethod
    def of(cls, lead: Lead, channel: str | None = None) -> LeadInfo:
        """The snapshot of a loaded lead."""
        return cls(
            id=lead.id, name=lead.name, phone=lead.phone, email=lead.email, source=lead.source,
            region=lead.region, product=lead.product, channel=channel,
            attributes=_copy(lead.attributes), team_id=lead.team_id, owner_id=lead.owner_id,
            stage=lead.stage, is_customer=lead.is_customer, locked=lead.locked,
        )


@dataclass(frozen=True, slots=True)
class TeamInfo:
    """A team as ``exclude_candidates`` and ``choose_owner`` see it.

    ``rr_pointer`` is the last user the round robin gave a lead to, as read
    under the team's row lock that routing holds while owners are chosen.
    """

    id: int
    name: str
    strategy: str
    active: bool = True
    rr_pointer: int | None = None

    @classmethod
    def of(cls, team: Team) -> TeamInfo:
        """The snapshot of a loaded team."""
        return cls(id=team.id, name=team.name, strategy=team.strategy, active=team.active,
                   rr_pointer=team.rr_pointer)


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user (a candidate, or the new owner of an assignment) as hooks see them."""

    id: int
    role: str
    email: str = ""
    name: str = ""
    team_id: int | None = None
    active: bool = True
    on_leave: bool = False
    daily_capacity: int | None = None
    weight: int = 1
    working_hours: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, user: User) -> UserInfo:
        """The snapshot of a loaded user."""
        return cls(
            id=user.id, role=user.role, email=user.email, name=user.name, team_id=user.team_id,
            active=user.active, on_leave=user.on_leave, daily_capacity=user.daily_capacity,
            weight=user.weight, working_hours=_copy(user.working_hours) if user.working_hours else None,
        )
