"""Test plugin whose event handler always raises."""

from typing import Any

from pelago.core import PluginSpec, hookimpl

ATTEMPTS: list[int] = []


class Hooks:
    @hookimpl
    def lead_created(self, ctx: Any, event: Any) -> None:
        ATTEMPTS.append(event.id)
        raise RuntimeError("failing plugin: boom")


plugin = PluginSpec(name="failing", title="Failing (test)", hooks=Hooks())
