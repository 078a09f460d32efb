"""Plugin `settlement`: branches, fair lead division, attribution and commission.

Branches, weighted division, attribution and commission periods land with the
settlement issue; the package is already a loadable entry point.
"""

from pelago.plugin import PluginSpec

plugin = PluginSpec(
    name="settlement",
    title="Branches and settlement",
    description="Branches, fair division of leads, attribution and commission.",
    version="0.1.0",
    core=">=0.1,<0.2",
)
