"""Ocean Engine (巨量引擎) and Kuaishou (快手) adapters for Pelago's ``conversions`` plugin.

A plugin with hooks only: no tables, routes or settings. It answers the
three hooks ``conversions`` declares for adapters, for the names
``ocean_engine`` and ``kuaishou``, and leaves every other name to other
adapters (``None``). ``conversions`` sends the requests built here through
Pelago's guarded ``post_json`` and keeps the outbox, the leases and the
retries.
"""

from pelago.plugin import PluginSpec

from . import adapters

plugin = PluginSpec(
    name="conversions_adapters",
    title="Ocean Engine and Kuaishou conversion adapters",
    description="Report conversions to Ocean Engine (巨量引擎) and Kuaishou (快手) through the conversions plugin.",
    version="0.1.0",
    core=">=0.1,<0.2",
    requires=("conversions",),
    hooks=adapters,
)
