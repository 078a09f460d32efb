"""pluggy markers of the ``pelago`` project.

Plugins decorate their hook functions with :data:`hookimpl`; the core (and
plugins that add hooks for others) declare them with :data:`hookspec`.
"""

import pluggy

PROJECT = "pelago"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
