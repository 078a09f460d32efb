"""Test plugin that requires ``recorder``."""

from pelago.core import PluginSpec

plugin = PluginSpec(name="needs_recorder", title="Needs recorder (test)", requires=("recorder",))
