"""What plugins add to a lead's timeline: the ``lead_timeline`` query and the entries it answers with.

The core's timeline of a lead (stages, ownership, activities) is read from its
own ledgers (:func:`pelago.core.services.leads.history`); what a plugin did
about the lead (an SMS sent, a conversion posted to an ad platform, a trial
lesson booked) lives in the plugin's tables. Each plugin on for the tenant
answers ``lead_timeline`` once per lead page with all its entries (one query
of its own, never one call per item); the console merges them with the
core's by time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .asking import answering
from .context import HookContext


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a lead's timeline, contributed by a plugin.

    ``at`` must be timezone-aware (the console shows it in the tenant's zone).
    ``kind`` is a short English label shown as the badge (``"sms"``,
    ``"trial"``); ``title`` an English message translated by the console with
    ``values`` filled in (``"SMS {status}"``, ``{"status": "delivered"}``), so a
    plugin's ``ConsolePages.messages`` can translate it; ``detail`` is shown as
    it is (a message's text, a platform's answer).
    """

    at: datetime
    kind: str
    title: str
    detail: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError(f"TimelineEntry.at must be timezone-aware, got {self.at!r}")


@dataclass(frozen=True)
class PluginTimelineEntry:
    """A :class:`TimelineEntry` with the plugin that answered it (what the console shows)."""

    plugin: str
    entry: TimelineEntry


def plugin_timeline(ctx: HookContext, lead_id: int) -> list[PluginTimelineEntry]:
    """Every entry the plugins on for the tenant answer for ``lead_id``, oldest first.

    Each plugin is asked once, through pluggy (wrappers see the call); a plugin
    off for the tenant is never asked. Ties keep the plugins' call order.
    """
    disabled = ctx.host.disabled_for(ctx.tenant)
    found: list[PluginTimelineEntry] = []
    for plugin in answering(ctx, "lead_timeline"):
        results = ctx.host.asker("lead_timeline", plugin, disabled)(ctx=ctx, lead_id=lead_id)
        for entry in (results[0] if results and results[0] else ()):
            if not isinstance(entry, TimelineEntry):
                raise TypeError(f"plugin {plugin!r} answered lead_timeline with {type(entry).__name__}, "
                                "not TimelineEntry")
            found.append(PluginTimelineEntry(plugin, entry))
    found.sort(key=lambda p: p.entry.at)
    return found
