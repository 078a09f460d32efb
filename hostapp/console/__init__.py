"""The web console at ``/console``: server-rendered pages for reps, managers and tenant admins.

The core's pages live in this package (``pages_*`` modules on one blueprint,
``console``); each plugin may add its own with :class:`~pelago.core.spec.ConsolePages`,
registered at ``/console/p/<plugin>/``. docs/console.md explains both.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, abort, render_template, request, send_from_directory
from markupsafe import Markup, escape

from pelago.core.errors import PelagoError
from pelago.core.runtime import Runtime

from . import i18n, web

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")

#: where ``make venv`` installs htmx from the npm registry (never fetched at run time)
HTMX_DIRS = (Path(sys.prefix) / "share" / "pelago-npm" / "node_modules" / "htmx.org" / "dist",)


@bp.get("/static/htmx.min.js")
def htmx() -> Any:
    for folder in HTMX_DIRS:
        if (folder / "htmx.min.js").is_file():
            return send_from_directory(folder, "htmx.min.js", max_age=86400)
    abort(404)


def htmx_installed() -> bool:
    return any((folder / "htmx.min.js").is_file() for folder in HTMX_DIRS)


def csrf_field() -> Markup:
    """The hidden input every console form carries."""
    c = web.g.get("console")
    token = c.csrf if c is not None else request.cookies.get(web.PRE_CSRF_COOKIE, "")
    return Markup(f'<input type="hidden" name="csrf_token" value="{escape(token)}">')


def field_messages(value: Any) -> str:
    """A field's error messages (a list, or one), each translated, joined (a template filter: ``x|messages``).

    The API's messages are English; the catalogue translates marshmallow's
    standard ones ("Missing data for required field."), the others show as they are.
    """
    if isinstance(value, str):
        return web.error_text(value)
    if isinstance(value, Mapping):
        return "; ".join(f"{key}: {field_messages(v)}" for key, v in value.items())
    if isinstance(value, Iterable):
        return "; ".join(field_messages(v) for v in value)
    return str(value)


def error_page(code: int, message: str = "") -> Response:
    titles = {404: "Page not found", 403: "Not allowed", 429: "Not allowed"}
    title = web._(titles.get(code, "Something went wrong"))
    if code == 404 and not message:
        message = web._("Nothing here, or not yours to see.")
    html = render_template("console/error.html", title=title, message=message, code=code)
    return Response(html, status=code, mimetype="text/html")


def install(app: Flask, runtime: Runtime) -> None:
    """Register the console's pages, every deployed plugin's console pages, and the sign-in guard."""
    from . import pages_admin, pages_auth, pages_dashboard, pages_imports, pages_leads, pages_plugins  # noqa: F401 - routes

    app.register_blueprint(bp)
    plugin_pages: dict[str, str] = {}
    for spec in runtime.host.specs.values():
        if spec.console is None:
            continue
        name = f"console_{spec.name}"
        app.register_blueprint(spec.console.blueprint, url_prefix=f"/console/p/{spec.name}", name=name)
        plugin_pages[name] = spec.name
        i18n.merge(spec.console.messages, spec.name)
    web.install_guard(app, plugin_pages)
    app.jinja_env.filters["local"] = web.local_time
    app.jinja_env.filters["messages"] = field_messages
    app.jinja_env.filters["zip_self"] = lambda values: [(v, v) for v in values]
    app.jinja_env.globals.update(_=web._, csrf_field=csrf_field, htmx_installed=htmx_installed,
                                 current_app=app)

    @app.context_processor
    def _layout() -> dict[str, Any]:
        if not request.path.startswith("/console"):
            return {}
        return {"console": web.g.get("console"), "locale": web.locale()}

    app.extensions["pelago_console_errors"] = error_page


def is_console_request() -> bool:
    return request.path.startswith("/console")


def html_error(err: Exception) -> Response | None:
    """The console's page for an error raised in a console view, or ``None`` outside the console."""
    if not is_console_request():
        return None
    if isinstance(err, web.ConsoleAbort):
        return error_page(err.code or 500, err.message)
    if isinstance(err, PelagoError):
        return error_page(err.status, err.message if err.status != 404 else "")
    code = getattr(err, "code", None)
    if isinstance(code, int):
        return error_page(code)
    return None
