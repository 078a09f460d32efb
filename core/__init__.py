"""pelago.core: the lead/customer core and the plugin contract.

The public API for plugin authors is the names below, plus the modules
``pelago.core.db`` (``Base``, ``TenantScoped``, ``BigId``, ``Money``,
``UtcDateTime``, ``JsonDoc``), ``pelago.core.models`` (the core's tables, to
point foreign keys and queries at) and, for routes, ``pelago.hostapp.api``
(``Blueprint``) and ``pelago.hostapp.auth`` (``ctx``, ``requires``,
``commit``). These change only with a deprecation period; everything else is
internal and may move.
"""

__version__ = "0.1.0"

from .clock import FrozenClock, system_clock  # noqa: E402
from .context import Actor, HookContext, JobContext, TenantState  # noqa: E402
from .errors import Conflict, Forbidden, InvalidInput, NotFound, PelagoError, Vetoed  # noqa: E402
from .events import Event  # noqa: E402
from .markers import hookimpl, hookspec  # noqa: E402
from .routing import Assignment, LeadInfo, OwnerChoice, TeamChoice  # noqa: E402
from .spec import Periodic, PluginSpec  # noqa: E402

__all__ = [
    "Actor",
    "Assignment",
    "Conflict",
    "Event",
    "Forbidden",
    "FrozenClock",
    "HookContext",
    "InvalidInput",
    "JobContext",
    "LeadInfo",
    "NotFound",
    "OwnerChoice",
    "PelagoError",
    "Periodic",
    "PluginSpec",
    "TeamChoice",
    "TenantState",
    "Vetoed",
    "__version__",
    "hookimpl",
    "hookspec",
    "system_clock",
]
