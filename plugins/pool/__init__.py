"""Plugin `pool`: the public pool (公海) of unworked leads.

Unworked leads go back to a pool by rule and other reps claim them. The
rules, claims and sweep land with the pool issue; this package already is a
real entry point so the host's discovery, switching and routing 404s are
exercised on it.
"""

from pelago.core import PluginSpec

plugin = PluginSpec(
    name="pool",
    title="Public pool (公海)",
    description="Unworked leads return to a pool by rule; others claim them.",
    version="0.1.0",
    core=">=0.1,<0.2",
)
