"""What a plugin *is*: its static description, kept outside pluggy.

Hooks say what a plugin does; :class:`PluginSpec` says what it brings (tables,
routes, commands, periodic jobs, settings). Keeping the two apart is what lets
the host attribute every route, job and table to the plugin that owns it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from marshmallow import Schema

if TYPE_CHECKING:  # pragma: no cover
    import click
    import flask
    from flask_smorest import Blueprint

    from .context import HookContext, JobContext

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
class MenuEntry:
    """One entry of the console's menu, pointing at a view of the plugin's console blueprint.

    ``label`` is English; the console shows it translated through
    :attr:`ConsolePages.messages`. ``endpoint`` is the view's name within the
    blueprint (``"pools"`` for ``@bp.get("/")`` on ``def pools()``). ``role``:
    the lowest role that sees the entry (the view checks it too, with
    :func:`pelago.plugin.console_requires`).
    """

    label: str
    endpoint: str
    role: str = "rep"


@dataclass(frozen=True)
class DashboardPanel:
    """A panel a plugin adds to the console's dashboard (shown only while the plugin is on).

    ``data(ctx)`` computes what the panel shows, with set-based SQL in
    ``ctx.session`` (the tenant's rows only, as in any view), and returns the
    values the template gets as ``panel``, or ``None`` for no panel this
    time. ``template`` is in the plugin's console blueprint's template
    folder (``"<plugin>/_panel.html"``: a fragment, not a page); ``title`` is
    English, translated through :attr:`ConsolePages.messages`. ``name``
    makes the panel's HTML id, ``panel-<plugin>-<name>``. ``role``: the
    lowest role that sees it (``data`` is not called for the others).
    ``data`` runs in a savepoint: if it raises, it is logged and the panel
    is shown as unavailable, and the rest of the dashboard is drawn.
    """

    name: str
    title: str
    template: str
    data: Callable[[HookContext], Mapping[str, Any] | None]
    role: str = "rep"


@dataclass(frozen=True)
class ConsolePages:
    """A plugin's pages in the web console (``/console/p/<plugin>/...``).

    ``blueprint`` is a plain :class:`flask.Blueprint` whose ``template_folder``
    is in the plugin's package (keep templates under a folder named after the
    plugin, ``templates/<plugin>/...``, and extend ``console/base.html``). The
    console signs the user in, checks the CSRF token of every form post, and
    answers 404 for every page of the blueprint to a tenant that has the
    plugin off; its menu entries are then not shown either. Views use
    :func:`pelago.plugin.current_context` as API views do, and
    :func:`pelago.plugin.render_page` to render.

    ``messages``: translations of the plugin's labels and template strings,
    ``{"zh-CN": {"Pools": "公海"}}``, keyed by the English text.
    ``panels``: the plugin's panels on the dashboard (:class:`DashboardPanel`).
    """

    blueprint: flask.Blueprint
    menu: Sequence[MenuEntry] = ()
    messages: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    panels: Sequence[DashboardPanel] = ()


@dataclass(frozen=True)
class PluginSpec:
    """The static half of a plugin, named by its ``pelago.plugins`` entry point.

    ``name`` is also the table prefix (``<name>_*``) and the URL segment
    (``/api/v1/<name>/``). ``settings`` is a marshmallow schema class whose
    ``load({})`` gives the defaults; fields with ``metadata={"secret": True}``
    are masked whenever settings are shown. ``console``: the plugin's pages
    and menu entries in the web console (:class:`ConsolePages`).
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
    console: ConsolePages | None = None

    def secret_fields(self) -> frozenset[str]:
        """Names of settings fields that must never be shown in clear."""
        if self.settings is None:
            return frozenset()
        return frozenset(
            name
            for name, f in self.settings().fields.items()
            if f.metadata.get("secret")
        )
