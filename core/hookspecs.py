"""Every hook the core calls, with its contract.

Two kinds:

* **Decisions** are called inside the transaction of the change. An exception
  propagates and rolls the whole operation back (fail closed).
* **Queries** gather what plugins hold (``privacy_export``, ``lead_timeline``): every plugin that is
  on answers, each answer kept under the plugin's name; nothing is written.
* **Events** are written to the outbox in the same transaction and delivered
  after commit, once per (event, plugin), retried on their own. Each event hook
  receives ``event``, an :class:`~pelago.core.events.Event` whose ``items`` is a
  tuple of immutable snapshots: one item for a single API change, up to a batch
  for bulk work (imports, sweeps), so plugins are called per batch. Use
  ``ctx.event_id`` to make a handler idempotent: delivery is at least once.

Every runtime hook receives ``ctx`` first (:class:`~pelago.core.context.HookContext`)
and is only called for plugins switched on for ``ctx.tenant``. Each hook has a
section in docs/hooks.md and a test; tests/test_hook_docs.py enforces both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .markers import hookspec

if TYPE_CHECKING:  # pragma: no cover
    from .context import HookContext
    from .events import Event
    from .routing import Assignment, OwnerChoice, TeamChoice
    from .snapshots import LeadInfo, TeamInfo, UserInfo
    from .timeline import TimelineEntry

# --- decisions ---------------------------------------------------------------


@hookspec
def choose_team(ctx: HookContext, leads: Sequence[LeadInfo]) -> Sequence[TeamChoice | None] | None:
    """Pick the team (and branch) of each new lead: one answer per lead, ``None`` = no opinion.

    Asked once per batch, plugin by plugin in call order, each time with only
    the leads no earlier plugin placed; the first answer for a lead wins.
    Return ``None`` to have no opinion on the whole batch.
    """


@hookspec
def exclude_candidates(
    ctx: HookContext, team: TeamInfo, candidates: Sequence[UserInfo], leads: Sequence[LeadInfo]
) -> Mapping[int, str] | None:
    """Reps of ``team`` who must get none of ``leads`` (this batch): ``{user_id: reason}``.

    Asked once per team per batch; the answers of all plugins merge.
    """


@hookspec
def choose_owner(
    ctx: HookContext, team: TeamInfo, candidates: Sequence[UserInfo], leads: Sequence[LeadInfo]
) -> Sequence[OwnerChoice | None] | None:
    """Pick each lead's owner among ``candidates``: one answer per lead, ``None`` = no opinion.

    Asked like ``choose_team``: plugin by plugin, each with the leads still
    undecided. ``OwnerChoice(None, reason)`` leaves a lead unowned on purpose.
    """


@hookspec
def check_assign(ctx: HookContext, assignments: Sequence[Assignment]) -> Mapping[int, str] | None:
    """Veto ownership changes: ``{index in assignments: message}``; ``None`` allows all.

    Asked plugin by plugin in call order, each with the assignments no earlier
    plugin refused; the first refusal wins and names the plugin.
    """


@hookspec
def check_stage_change(ctx: HookContext, lead: LeadInfo, old: str, new: str) -> str | None:
    """Veto a stage change by returning a message; ``None`` allows it.

    Asked plugin by plugin in call order; the first message refuses the change
    (409 naming the plugin) and later plugins are not asked.
    """


# --- events ------------------------------------------------------------------


@hookspec
def lead_created(ctx: HookContext, event: Event) -> None:
    """New leads; each item is the lead's snapshot (with ``owner_id``, ``team_id``)."""


@hookspec
def lead_merged(ctx: HookContext, event: Event) -> None:
    """A submission was folded into an existing lead: ``{lead_id, touch_id, matched_on, filled}``."""


@hookspec
def lead_assigned(ctx: HookContext, event: Event) -> None:
    """Owner set or changed: ``{lead_id, from_user_id, to_user_id, reason, rule}``."""


@hookspec
def lead_released(ctx: HookContext, event: Event) -> None:
    """Owner removed: ``{lead_id, from_user_id, reason, rule}``."""


@hookspec
def lead_stage_changed(ctx: HookContext, event: Event) -> None:
    """Stage moved: ``{lead_id, old, new, lost_reason}``."""


@hookspec
def activity_logged(ctx: HookContext, event: Event) -> None:
    """A follow-up was logged: ``{activity_id, lead_id, kind, user_id, occurred_at}``."""


@hookspec
def deal_won(ctx: HookContext, event: Event) -> None:
    """A deal was recorded: ``{deal_id, lead_id, amount, currency, product, kind, owner_id, team_id, won_at}``."""


@hookspec
def deal_refunded(ctx: HookContext, event: Event) -> None:
    """A refund was recorded: ``{refund_id, deal_id, lead_id, amount, reason, refunded_total}``."""


@hookspec
def plugin_enabled(ctx: HookContext, event: Event) -> None:
    """A plugin was switched on for the tenant: ``{plugin}``; the plugin itself receives it."""


@hookspec
def plugin_disabled(ctx: HookContext, event: Event) -> None:
    """A plugin was switched off for the tenant: ``{plugin}``; sent to the others."""


@hookspec
def plugin_settings_changed(ctx: HookContext, event: Event) -> None:
    """A plugin's settings changed for the tenant: ``{plugin, changed}`` (names of changed fields)."""


@hookspec
def person_erased(ctx: HookContext, event: Event) -> None:
    """A person was erased (a privacy request): ``{lead_id}`` per lead; erase the personal data you hold about them.

    Delivered to every plugin that implements it, on or off for the tenant:
    switching a plugin off keeps its data, so an erasure must reach it too.
    """


# --- queries -------------------------------------------------------------------


@hookspec
def privacy_export(ctx: HookContext, lead_ids: Sequence[int]) -> Mapping[str, Any] | None:
    """What this plugin holds about the leads ``lead_ids`` (one person): JSON for a privacy export.

    Every plugin on for the tenant is asked; the answer goes under the
    plugin's name in the export. ``None`` (or an empty mapping): nothing held.
    """


@hookspec
def lead_timeline(ctx: HookContext, lead_id: int) -> Sequence[TimelineEntry] | None:
    """What this plugin did about lead ``lead_id``, for the lead's timeline in the console.

    Asked once per lead page, of every plugin on for the tenant: answer every
    entry at once (one query, not one per row). ``None`` or empty: nothing.
    The console merges the entries with the core's by time.
    """


DECISIONS = ("choose_team", "exclude_candidates", "choose_owner", "check_assign", "check_stage_change")
EVENTS = (
    "lead_created",
    "lead_merged",
    "lead_assigned",
    "lead_released",
    "lead_stage_changed",
    "activity_logged",
    "deal_won",
    "deal_refunded",
    "plugin_enabled",
    "plugin_disabled",
    "plugin_settings_changed",
    "person_erased",
)
QUERIES = ("privacy_export", "lead_timeline")
#: events delivered to every plugin implementing them, switched on for the tenant or not
TO_ALL_PLUGINS = frozenset({"person_erased"})




