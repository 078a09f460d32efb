"""``/api/v1/settlement``: branches, distribution policies, allocations (and the money side).

The host mounts :data:`blp` at ``/api/v1/settlement`` and answers 404, naming
the plugin, for a tenant that has settlement off, so no view checks that
itself. Each resource has its own module; importing them registers their
routes on :data:`blp`.
"""

from __future__ import annotations

from pelago.plugin import Blueprint

blp = Blueprint(
    "settlement", __name__,
    description="Branches, fair division of new leads between them, attribution and commission",
)

from . import branches, credits, ledger, policies, rules  # noqa: E402,F401 - registers the routes
