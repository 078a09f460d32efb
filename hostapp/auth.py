"""Bearer authentication, the request's hook context, and role checks.

One query per request reads the key, its user and its tenant (with the
tenant's ``plugins_version`` and routing version); the plugin switches and the
routing configuration come from the process's caches unless a version moved. The tenant always comes from the credential; only
an operator may name one, with the ``X-Pelago-Tenant`` header.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from flask_smorest import abort
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, aliased

from pelago.core.context import Actor, HookContext
from pelago.core.models import ApiKey, RoutingVersion, Tenant, User
from pelago.core.routing_config import KNOWN_VERSION
from pelago.core.runtime import Runtime
from pelago.core.security import key_matches, split_key
from pelago.core.services.admin import SLUG

F = TypeVar("F", bound=Callable[..., Any])
PUBLIC = "pelago_public"


def runtime() -> Runtime:
    return current_app.extensions["pelago"]  # type: ignore[no-any-return]


def public(view: F) -> F:
    """Mark a view as needing no credential (webhooks, health, a feed behind a token in its URL).

    The view authenticates the caller itself (a signature, a token), finds the
    tenant with :func:`public_session`, and then calls :func:`enter_tenant`.
    A plugin's public view is not gated by the per-tenant switch until
    ``enter_tenant(tenant_id, plugin=...)`` checks it.
    """
    setattr(view, PUBLIC, True)
    return view


def ctx() -> HookContext:
    """The hook context of this request; 403 for an operator who named no tenant."""
    context = g.get("pelago_ctx")
    if context is None:
        abort(403, message="this route acts on a tenant: operators name one with X-Pelago-Tenant")
    return context  # type: ignore[no-any-return]


def actor() -> Actor:
    return g.pelago_actor  # type: ignore[no-any-return]


def requires(role: str) -> Callable[[F], F]:
    """Refuse callers below ``role`` (operator > admin > manager > rep) with 403."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not actor().at_least(role):
                abort(403, message=f"this needs the {role} role or higher")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def commit() -> None:
    """Commit the request's transaction (events are handed on after commit)."""
    g.pelago_session.commit()


def public_session() -> Session:
    """The session of a :func:`public` route, closed with the request; not yet scoped to a tenant.

    Public routes find their tenant themselves (a webhook from its channel's
    key); until :func:`enter_tenant`, queries on it see every tenant's rows.
    """
    session = runtime().sessions()
    g.pelago_session = session
    return session


def enter_tenant(tenant_id: int, plugin: str | None = None) -> HookContext:
    """Scope the public route's session to ``tenant_id`` and act in it as the system (no actor).

    After this, :func:`ctx` and :func:`commit` work as on any tenant route.
    With ``plugin``, a tenant that has that plugin off gets the same 404 as
    on the plugin's authenticated routes.
    """
    rt = runtime()
    session = g.pelago_session
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:  # pragma: no cover - a channel's tenant cascades away with it
        abort(404, message="not found")
    session.info["tenant_id"] = tenant.id
    state = rt.host.tenant_state(session, tenant)
    if plugin is not None and plugin not in state.enabled:
        abort(404, message=f"plugin {plugin!r} is not enabled for this tenant")
    g.pelago_ctx = rt.context(session, state, None)
    return g.pelago_ctx  # type: ignore[no-any-return]


def webhook_context(tenant: int | str) -> HookContext:
    """The context of ``tenant`` (an id or a slug) for a :func:`public` route, acting as the system.

    For webhooks that name their tenant in the path (an SMS gateway's receipts,
    a payment provider's callback). The route must still authenticate the
    sender itself (a signature). 404 for an unknown tenant and, on a plugin's
    route, for a tenant that has that plugin off, as on its other routes.
    After this, :func:`ctx` and :func:`commit` work as on any tenant route.
    """
    if g.get("pelago_session") is None:
        public_session()
    session = g.pelago_session
    found: int | None = None
    if isinstance(tenant, str):
        if SLUG.match(tenant):
            found = session.scalars(select(Tenant.id).where(Tenant.slug == tenant)).first()
    elif 0 < tenant < 2**63:
        found = session.scalars(select(Tenant.id).where(Tenant.id == tenant)).first()
    if found is None:
        abort(404, message=f"no tenant {tenant!r}")
    assert found is not None  # abort raised
    context = enter_tenant(found)
    for spec in runtime().host.specs.values():
        if spec.blueprint is not None and spec.blueprint.name == request.blueprint:
            if spec.name not in context.tenant.enabled:
                abort(404, message=f"plugin {spec.name!r} is not enabled for this tenant")
    return context


_tenant = aliased(Tenant)
#: The key, its user, its tenant and the tenant's routing version, in one query; built once
#: (a statement built per request costs more Python than the query's round trip).
_CREDENTIAL = (
    select(ApiKey, User, _tenant, RoutingVersion.version)
    .join(User, User.id == ApiKey.user_id)
    .outerjoin(_tenant, _tenant.id == User.tenant_id)
    .outerjoin(RoutingVersion, RoutingVersion.tenant_id == User.tenant_id)
    .where(ApiKey.prefix == bindparam("prefix"))
)


#: The largest body read before the view so that the credential's transaction can stay open
SMALL_BODY = 1 << 20


def _body_read() -> bool:
    """Is the request's body in memory now? Reads it when it is small (Werkzeug's parsers reuse it)."""
    if request.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
        return False  # chunked: no length known up front
    length = request.content_length
    if not length:
        return True
    if length > min(SMALL_BODY, request.max_content_length or SMALL_BODY):
        return False  # large, or for the view to accept (it may raise the limit) or refuse
    request.get_data(cache=True)
    return True


def install(app: Flask, plugin_blueprints: dict[str, str]) -> None:
    """Authenticate every ``/api/v1`` request and gate plugin routes per tenant."""

    @app.before_request
    def _authenticate() -> None:
        if not request.path.startswith("/api/v1"):
            return
        view = app.view_functions.get(request.endpoint or "")
        if view is None or getattr(view, PUBLIC, False):
            return
        rt = runtime()
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            abort(401, message="missing credential: send Authorization: Bearer <api key>")
        key = key.strip()
        prefix = split_key(key)
        if prefix is None:
            abort(401, message="invalid API key")
        session = rt.sessions()
        g.pelago_session = session
        row = session.execute(_CREDENTIAL, {"prefix": prefix}).first()
        if row is None or not key_matches(key, row[0].secret_hash) or row[0].revoked_at is not None:
            abort(401, message="invalid API key")
        api_key, user, tenant, routing_version = row
        if not user.active:
            abort(401, message="this user is deactivated")
        g.pelago_actor = Actor(
            user_id=user.id, role=user.role, tenant_id=user.tenant_id, team_id=user.team_id, email=user.email
        )
        # Held for the request: the session's identity map keeps only weak references, and services
        # that need the caller's row (``session.get(User, actor.user_id)``) then find it without a query.
        g.pelago_user = user
        if tenant is None:  # an operator
            slug = request.headers.get("X-Pelago-Tenant")
            if slug:
                if not SLUG.fullmatch(slug):
                    abort(404, message=f"no tenant with slug {slug!r}")
                tenant = session.scalars(select(Tenant).where(Tenant.slug == slug)).first()
                if tenant is None:
                    abort(404, message=f"no tenant with slug {slug!r}")
        if tenant is None:
            g.pelago_ctx = None
        else:
            session.info["tenant_id"] = tenant.id
            state = rt.host.tenant_state(session, tenant)
            g.pelago_ctx = rt.context(session, state, g.pelago_actor)
        plugin = plugin_blueprints.get(request.blueprint or "")
        if plugin is not None:
            context = g.pelago_ctx
            if context is None or plugin not in context.tenant.enabled:
                abort(404, message=f"plugin {plugin!r} is not enabled for this tenant")
        # End the credential's read before the view reads a body still on the wire (rows stay loaded:
        # no expiry): a slow upload must not hold a pooled connection, its locks (a migration's lock
        # would queue behind them) or, on SQLite, the write gate. PostgreSQL keeps the one
        # transaction when the body is small and now read: a COMMIT and a BEGIN fewer per request.
        if session.get_bind().dialect.name == "sqlite" or not _body_read():
            session.commit()
        if g.pelago_ctx is not None and tenant.id == user.tenant_id:
            # The version the credential query read, for the rest of the request: this transaction's
            # own when it was kept; after the commit above, the version when the request was
            # authenticated (routing then uses that configuration if cached, as a request that came
            # a moment earlier would; an edit committed since is seen from the next request on).
            session.info[KNOWN_VERSION] = (tenant.id, int(routing_version or 0))

    @app.teardown_request
    def _close(_exc: BaseException | None) -> None:
        session = g.pop("pelago_session", None)
        if session is not None:
            session.close()
