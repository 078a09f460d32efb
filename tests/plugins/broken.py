"""Test plugin that cannot be imported."""

raise ImportError("broken test plugin: a dependency is missing")
