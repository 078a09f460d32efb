"""What every hook and job receives first: ``ctx``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from .clock import Clock

if TYPE_CHECKING:  # pragma: no cover
    from .host import PluginHost, TenantHooks


@dataclass(frozen=True)
class TenantState:
    """A tenant as the hooks see it: identity, locale and plugin switches.

    Built from the database once per ``plugins_version`` and cached by the host;
    immutable so it can be shared between threads.
    """

    id: int
    slug: str
    name: str
    timezone: str
    default_region: str
    currency: str
    version: int
    enabled: frozenset[str]
    settings: Mapping[str, Mapping[str, Any]]

    @cached_property
    def tz(self) -> ZoneInfo:
        """The tenant's timezone, for "today" and for showing times (looked up once per state)."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Actor:
    """Who is acting: a user, or ``None`` on the context for the system (jobs, rules)."""

    user_id: int
    role: str
    tenant_id: int | None
    team_id: int | None = None
    email: str = ""

    def at_least(self, role: str) -> bool:
        rank = _ranks()
        return rank[self.role] >= rank[role]


def _ranks() -> Mapping[str, int]:
    """The roles' ranks (imported on first use: the models import this module's neighbours)."""
    global _RANK
    if _RANK is None:
        from .models import ROLE_RANK

        _RANK = ROLE_RANK
    return _RANK


_RANK: Mapping[str, int] | None = None


@dataclass
class HookContext:
    """Passed first to every runtime hook and periodic job.

    ``session`` is the open transaction of the change (decisions) or of the
    delivery (events); ``now()`` is the clock to use instead of ``datetime.now``.
    """

    tenant: TenantState
    session: Session
    actor: Actor | None
    host: PluginHost
    clock: Clock
    event_id: int | None = None

    def now(self) -> datetime:
        """The current time, aware UTC: use it instead of ``datetime.now`` (tests freeze it)."""
        return self.clock()

    def settings(self, plugin: str) -> Mapping[str, Any]:
        """The plugin's validated settings for this tenant (defaults filled in)."""
        return self.tenant.settings.get(plugin, {})

    def enabled(self, plugin: str) -> bool:
        return plugin in self.tenant.enabled

    @property
    def hooks(self) -> TenantHooks:
        """The hooks of the plugins on for this tenant (for plugins calling others)."""
        return self.host.hooks_for(self.tenant)

    def enqueue(self, job: str, **kwargs: Any) -> None:
        """Run the plugin job ``job`` (``"<plugin>.<name>"``, a :class:`~pelago.core.spec.Job`) for this tenant.

        It is handed to the queue when this transaction commits, and dropped
        if it rolls back; ``kwargs`` must be JSON-able.
        """
        from .jobs import defer

        defer(self, job, kwargs)

    def emit(self, name: str, items: Sequence[Mapping[str, Any]]) -> int | None:
        """Write the event ``name`` with ``items`` (JSON-able dicts) to this transaction's outbox.

        It is delivered to the subscribing plugins after the commit, and
        never if the transaction rolls back. Returns the event id.
        """
        from .events import emit

        return emit(self, name, items)


JobContext = HookContext
