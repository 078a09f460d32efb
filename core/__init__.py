"""pelago.core: the lead/customer core, the plugin host and the hooks.

Plugin authors import ``pelago.plugin`` (the one public surface, curated in
its ``__all__``) and ``pelago.testing`` in their tests, never this package:
everything under ``pelago.core`` is internal and may move. The names below
are kept for the core's own code and tests.
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
