"""The console's request plumbing: sign-in sessions, CSRF, the tenant context, rendering.

Every request under ``/console`` (the core's pages and every plugin's) goes
through :func:`_before`: it reads the session cookie, loads the session row
with its user and tenant in one query, and sets up the same request context
the API's bearer authentication does (``g.pelago_ctx``, ``g.pelago_actor``),
so views call the core services exactly as the API views do. A form post
without the session's CSRF token is refused before any view runs; a plugin's
page for a tenant that has the plugin off is a 404.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Response, current_app, g, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from pelago.core.context import Actor
from pelago.core.models import ROLE_RANK, ConsoleSession, Tenant, User
from pelago.core.runtime import Runtime

from . import i18n

F = TypeVar("F", bound=Callable[..., Any])

COOKIE = "pelago_console"
PRE_CSRF_COOKIE = "pelago_console_csrf"  # the sign-in form's token, before there is a session
PUBLIC_ENDPOINTS = frozenset({"console.sign_in", "console.static", "console.htmx"})
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class MenuItem:
    label: str
    url: str
    endpoint: str


@dataclass
class Console:
    """What the console knows about the signed-in browser during one request."""

    row: ConsoleSession
    user: User
    tenant: Tenant
    locale: str
    notice: str | None = None
    menu: list[MenuItem] = field(default_factory=list)

    @property
    def csrf(self) -> str:
        return self.row.csrf_token

    def at_least(self, role: str) -> bool:
        return ROLE_RANK[self.user.role] >= ROLE_RANK[role]


class ConsoleAbort(HTTPException):
    """A console page's error, answered as an HTML page (404, 403, 429)."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def runtime() -> Runtime:
    return current_app.extensions["pelago"]  # type: ignore[no-any-return]


def lifetime() -> timedelta:
    return timedelta(hours=current_app.extensions["pelago_settings"].console_session_hours)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def console() -> Console:
    """The signed-in browser's state (only on pages behind sign-in)."""
    return g.console  # type: ignore[no-any-return]


def locale() -> str:
    c = g.get("console")
    if c is not None:
        return c.locale
    chosen = request.args.get("lang") or request.cookies.get("pelago_lang")
    if chosen in i18n.LOCALES:
        return chosen  # type: ignore[return-value]
    best = request.accept_languages.best_match(["zh-CN", "zh", "en"])
    return "zh-CN" if best in ("zh-CN", "zh") else "en"


def _(message: str, **values: Any) -> str:
    """Translate ``message`` into the request's language (``{name}`` placeholders filled from ``values``)."""
    plugin = current_app.extensions.get("pelago_console_plugins", {}).get(request.blueprint or "")
    return i18n.translate(locale(), message, plugin, **values)


def error_text(message: str) -> str:
    """A field's error message in the request's language (marshmallow's, with their values, are translated)."""
    plugin = current_app.extensions.get("pelago_console_plugins", {}).get(request.blueprint or "")
    return i18n.translate_error(locale(), message, plugin)


def local_time(at: Any) -> str:
    """``at`` in the signed-in tenant's timezone, to the minute (a template filter: ``x|local``)."""
    if at is None:
        return ""
    c = g.get("pelago_ctx")
    tz = c.tenant.tz if c is not None else None
    return str(at.astimezone(tz).strftime("%Y-%m-%d %H:%M"))


def render_page(template: str, **context: Any) -> str:
    """Render a console template (a core one or a plugin's) with the layout's context.

    Templates get ``_`` (translate), ``console`` (user, tenant, locale, menu)
    and ``csrf_field()`` besides ``context``.
    """
    return render_template(template, **context)


def notify(message: str) -> None:
    """Show ``message`` (already translated) once, on the next page this browser opens."""
    c = console()
    c.row.notice = message[:1000]


def back(endpoint: str, message: str | None = None, **values: Any) -> Response:
    """Redirect after a successful post (and commit), with an optional notice for the next page."""
    if message is not None:
        notify(message)
    g.pelago_session.commit()
    return redirect(url_for(endpoint, **values))  # type: ignore[return-value]


def console_requires(role: str) -> Callable[[F], F]:
    """Refuse a console page to users below ``role`` (rep < manager < admin) with a 403 page."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not console().at_least(role):
                raise ConsoleAbort(403, _("Not allowed"))
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def safe_next(target: str | None) -> str:
    """Only a path inside the console is a place to go after sign-in (no open redirect)."""
    if not target:
        return url_for("console.dashboard")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console") or target.startswith("//"):
        return url_for("console.dashboard")
    return target


def start_session(user: User, tenant: Tenant) -> tuple[ConsoleSession, str]:
    """A new session row for ``user`` and the token the browser keeps (only its hash is stored)."""
    rt = runtime()
    token = secrets.token_urlsafe(32)
    now = rt.clock()
    row = ConsoleSession(
        token_hash=token_hash(token), tenant_id=tenant.id, user_id=user.id, csrf_token=secrets.token_urlsafe(32),
        locale=None, created_at=now, expires_at=now + lifetime(),
    )
    g.pelago_session.add(row)
    return row, token


def set_cookie(response: Response, token: str) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="Lax", secure=request.is_secure, path="/console",
                        max_age=int(lifetime().total_seconds()))


def _load(session: Any, token: str) -> tuple[ConsoleSession, User, Tenant] | None:
    row = session.execute(
        select(ConsoleSession, User, Tenant)
        .join(User, User.id == ConsoleSession.user_id)
        .join(Tenant, Tenant.id == ConsoleSession.tenant_id)
        .where(ConsoleSession.token_hash == token_hash(token))
    ).first()
    if row is None:
        return None
    sess, user, tenant = row
    if sess.expires_at <= runtime().clock() or not user.active or user.tenant_id != tenant.id:
        return None
    return sess, user, tenant


def _csrf_ok(expected: str) -> bool:
    given = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def install_guard(app: Any, plugin_pages: dict[str, str]) -> None:
    """Authenticate every ``/console`` request; ``plugin_pages``: blueprint name → plugin."""
    app.extensions["pelago_console_plugins"] = plugin_pages

    @app.before_request
    def _before() -> Any:
        if not request.path.startswith("/console"):
            return None
        endpoint = request.endpoint or ""
        rt = runtime()
        session = rt.sessions()
        g.pelago_session = session
        if endpoint in PUBLIC_ENDPOINTS:
            if request.method in UNSAFE and not _csrf_ok(request.cookies.get(PRE_CSRF_COOKIE, "")):
                raise ConsoleAbort(403, _("The form expired. Reload the page and try again."))
            return None
        token = request.cookies.get(COOKIE)
        found = _load(session, token) if token else None
        if found is None:
            session.rollback()
            target = url_for("console.sign_in", next=request.full_path if request.method == "GET" else None)
            if request.headers.get("HX-Request"):
                return Response(status=204, headers={"HX-Redirect": target})
            return redirect(target)
        row, user, tenant = found
        if request.method in UNSAFE and not _csrf_ok(row.csrf_token):
            raise ConsoleAbort(403, _("The form expired. Reload the page and try again."))
        now = rt.clock()
        if row.expires_at - now < lifetime() - timedelta(minutes=5):
            row.expires_at = now + lifetime()  # sliding expiry, written at most every 5 minutes
        notice = row.notice
        if notice is not None and request.method == "GET" and not request.headers.get("HX-Request"):
            row.notice = None
        else:
            notice = None
        g.console = Console(row=row, user=user, tenant=tenant,
                            locale=row.locale or i18n.tenant_locale(tenant.default_region), notice=notice)
        g.pelago_actor = Actor(user_id=user.id, role=user.role, tenant_id=user.tenant_id, team_id=user.team_id,
                               email=user.email)
        g.pelago_user = user
        session.info["tenant_id"] = tenant.id
        state = rt.host.tenant_state(session, tenant)
        g.pelago_ctx = rt.context(session, state, g.pelago_actor)
        plugin = plugin_pages.get(request.blueprint or "")
        if plugin is not None and plugin not in state.enabled:
            raise ConsoleAbort(404)
        g.console.menu = _menu(state.enabled)
        # End the read (and write the sliding expiry): SQLite's write gate is not held while the view reads a body.
        session.commit()
        return None


#: the core's menu: (label, endpoint, lowest role)
CORE_MENU: tuple[tuple[str, str, str], ...] = (
    ("Dashboard", "console.dashboard", "rep"),
    ("Leads", "console.leads", "rep"),
    ("Imports", "console.imports", "manager"),
    ("Plugins", "console.plugins", "admin"),
    ("Users", "console.users", "admin"),
    ("Teams", "console.teams", "admin"),
    ("Routing", "console.routing", "admin"),
    ("Channels", "console.channels", "admin"),
    ("API keys", "console.api_keys", "rep"),
    ("Deliveries", "console.deliveries", "admin"),
)


def _menu(enabled: frozenset[str]) -> list[MenuItem]:
    c = console()
    items = [MenuItem(_(label), url_for(ep), ep) for label, ep, role in CORE_MENU
             if ep in current_app.view_functions and c.at_least(role)]
    for spec in runtime().host.specs.values():
        if spec.console is None or spec.name not in enabled:
            continue
        for entry in spec.console.menu:
            if c.at_least(entry.role):
                ep = f"console_{spec.name}.{entry.endpoint}"
                items.append(MenuItem(_(entry.label), url_for(ep), ep))
    return items
