"""pelago-lead-score: an example third-party Pelago plugin.

It keeps one score per lead (``lead_score_score``), computed from the tenant's
settings: points for the lead's source plus points for each recent activity.
Scores are recomputed when leads are created or merged and when activities are
logged (event hooks), for every lead when the plugin is switched on, and by a
daily job that lets old activities age out of the window.

This module only describes the plugin (:class:`~pelago.plugin.PluginSpec`); the
behaviour lives in :mod:`.hooks`, the tables in :mod:`.models`, the routes in
:mod:`.api` and the jobs in :mod:`.jobs`.
"""

from datetime import timedelta
from pathlib import Path

from pelago.plugin import Periodic, PluginSpec

from . import api, hooks, jobs, schemas

__version__ = "0.1.0"

plugin = PluginSpec(
    name="lead_score",
    title="Lead score",
    description="Scores leads by source and recent follow-ups; lists the hottest leads.",
    version=__version__,
    core=">=0.1,<0.2",
    settings=schemas.Settings,
    blueprint=api.blp,
    periodic=(Periodic("decay", jobs.decay, timedelta(days=1)),),
    migrations=Path(__file__).parent / "migrations",
    hooks=hooks,
    default_enabled=False,
)
