"""What a plugin *is*: its static description, kept outside pluggy.

Hooks say what a plugin does; :class:`PluginSpec` says what it brings (tables,
routes, commands, periodic jobs, settings). Keeping the two apart is what lets
the host attribute every route, job and table to the plugin that owns it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from marshmallow import Schema

if TYPE_CHECKING:  # pragma: no cover
    import click
    from flask_smorest import Blueprint

    from .context import JobContext

NAME_PATTERN = r"^[a-z][a-z0-9_]{1,30}$"


@dataclass(frozen=True)
class Periodic:
    """A job run every ``every`` for each tenant that has the plugin on.

    ``func(ctx)`` gets a :class:`~pelago.core.context.JobContext` for one tenant
    and runs in a worker (or inline in the embedded mode). It must be
    idempotent: the scheduler guarantees one run per period, not zero retries.
    """

    name: str
    func: Callable[[JobContext], Any]
    every: timedelta


@dataclass(frozen=True)
class Job:
    """A named background job of a plugin, run for one tenant in a worker (or inline).

    Declared on :attr:`PluginSpec.jobs` and enqueued by its full name
    ``"<plugin>.<name>"`` with JSON-able keyword arguments:
    ``ctx.enqueue("lead_score.export", since="2026-01-01")``. The job is handed
    to the queue when the enqueuing transaction commits (never if it rolls
    back) and runs as ``func(ctx, **kwargs)`` with a :class:`JobContext` for
    that tenant, committed when it returns. It is skipped for a tenant that
    switched the plugin off meanwhile. ``timeout``: seconds (rq's default is
    180). Like every job it must be idempotent: it may be retried.
    """

    name: str
    func: Callable[..., Any]
    timeout: int | None = None


@dataclass(frozen=True)
class PluginSpec:
    """The static half of a plugin, named by its ``pelago.plugins`` entry point.

    ``name`` is also the table prefix (``<name>_*``) and the URL segment
    (``/api/v1/<name>/``). ``settings`` is a marshmallow schema class whose
    ``load({})`` gives the defaults; fields with ``metadata={"secret": True}``
    are masked whenever settings are shown.
    """

    name: str
    title: str
    description: str = ""
    version: str = "0.1.0"
    requires: Sequence[str] = ()
    core: str = ">=0.1"
    settings: type[Schema] | None = None
    blueprint: Blueprint | None = None
    commands: click.Group | None = None
    periodic: Sequence[Periodic] = ()
    jobs: Sequence[Job] = ()
    migrations: Path | None = None
    hooks: ModuleType | object | None = None
    hookspecs: ModuleType | object | None = None
    default_enabled: bool = False

    def secret_fields(self) -> frozenset[str]:
        """Names of settings fields that must never be shown in clear."""
        if self.settings is None:
            return frozenset()
        return frozenset(
            name
            for name, f in self.settings().fields.items()
            if f.metadata.get("secret")
        )
