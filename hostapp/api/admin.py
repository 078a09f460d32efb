"""Tenant administration: ``/api/v1/users``, ``/teams``, ``/api-keys``, ``/deliveries``, ``/posts``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from pelago.core.errors import Forbidden, NotFound
from pelago.core.models import ApiKey, Delivery, OutboundPost, OutboxEvent, Team, User
from pelago.core.pagination import paginate
from pelago.core.services import admin as svc

from ..auth import commit, ctx, requires
from . import Blueprint
from . import schemas as s

users = Blueprint("users", __name__, url_prefix="/api/v1/users", description="People of the tenant")
teams = Blueprint("teams", __name__, url_prefix="/api/v1/teams", description="Sales teams")
keys = Blueprint("api_keys", __name__, url_prefix="/api/v1/api-keys", description="API keys")
deliveries = Blueprint(
    "deliveries", __name__, url_prefix="/api/v1/deliveries",
    description="Event deliveries to plugins: which failed, why, how often",
)

posts = Blueprint(
    "posts", __name__, url_prefix="/api/v1/posts",
    description="Webhooks plugins queued to the tenant's URLs: sent, waiting, failed, and why",
)


def _page(stmt: Any, col: Any, args: dict[str, Any]) -> dict[str, Any]:
    page = paginate(ctx().session, stmt, col, args.get("cursor"), args["limit"])
    return {"items": page.items, "next_cursor": page.next_cursor}


# --- users --------------------------------------------------------------------


@users.route("", methods=["GET"])
@users.arguments(s.PageArgs, location="query")
@users.response(200, s.UserPage)
def list_users(args: dict[str, Any]) -> Any:
    """List the tenant's users.

    Paginated with `limit` and `cursor`; any role may read it.
    """
    return _page(select(User), User.id, args)


@users.route("", methods=["POST"])
@users.arguments(s.UserArgs)
@users.response(201, s.User)
@requires("admin")
def create_user(data: dict[str, Any]) -> Any:
    """Create a user of the tenant (admins).

    `role` is `admin`, `manager` or `rep`, at most the caller's own. A
    duplicate email is a 409.
    """
    c = ctx()
    user = svc.create_user(c.session, tenant_id=c.tenant.id, now=c.now(), by=c.actor, **data)
    commit()
    return user


@users.route("/<int:user_id>", methods=["GET"])
@users.response(200, s.User)
def show_user(user_id: int) -> Any:
    """Read one user.

    Another tenant's user is a 404.
    """
    return svc.get_user(ctx(), user_id)


@users.route("/<int:user_id>", methods=["PATCH"])
@users.arguments(s.UserPatch)
@users.response(200, s.User)
@requires("admin")
def patch_user(data: dict[str, Any], user_id: int) -> Any:
    """Change a user (admins): name, role, team, active, leave, password, routing limits.

    Deactivating or demoting the tenant's last active admin is a 409. For
    routing: `daily_capacity`, `weight` and `working_hours`.
    """
    c = ctx()
    user = svc.update_user(c, svc.get_user(c, user_id), data)
    commit()
    return user


# --- teams --------------------------------------------------------------------


@teams.route("", methods=["GET"])
@teams.arguments(s.PageArgs, location="query")
@teams.response(200, s.TeamPage)
def list_teams(args: dict[str, Any]) -> Any:
    """List the tenant's teams.

    Each team shows its strategy and `rr_pointer` (round robin's last
    assigned user).
    """
    return _page(select(Team), Team.id, args)


@teams.route("", methods=["POST"])
@teams.arguments(s.TeamArgs)
@teams.response(201, s.Team)
@requires("admin")
def create_team(data: dict[str, Any]) -> Any:
    """Create a team (admins).

    `strategy` is `round_robin` (default), `load_balanced` or `weighted`. A
    duplicate name is a 409.
    """
    team = svc.create_team(ctx(), data)
    commit()
    return team


@teams.route("/<int:team_id>", methods=["GET"])
@teams.response(200, s.Team)
def show_team(team_id: int) -> Any:
    """Read one team.

    Another tenant's team is a 404.
    """
    return svc.get_team(ctx(), team_id)


@teams.route("/<int:team_id>", methods=["PATCH"])
@teams.arguments(s.TeamPatch)
@teams.response(200, s.Team)
@requires("admin")
def patch_team(data: dict[str, Any], team_id: int) -> Any:
    """Change a team (admins): name, description, active, strategy.

    A duplicate name is a 409.
    """
    c = ctx()
    team = svc.update_team(c, svc.get_team(c, team_id), data)
    commit()
    return team


# --- API keys -------------------------------------------------------------------


@keys.route("", methods=["GET"])
@keys.arguments(s.PageArgs, location="query")
@keys.response(200, s.ApiKeyPage)
def list_keys(args: dict[str, Any]) -> Any:
    """List API keys: prefix, name, created, revoked; never the secret.

    Admins see every key of the tenant; others see their own.
    """
    c = ctx()
    stmt = select(ApiKey).where(ApiKey.tenant_id == c.tenant.id)
    if c.actor is not None and not c.actor.at_least("admin"):
        stmt = stmt.where(ApiKey.user_id == c.actor.user_id)
    return _page(stmt, ApiKey.id, args)


@keys.route("", methods=["POST"])
@keys.arguments(s.ApiKeyArgs)
@keys.response(201, s.ApiKeyCreated)
def create_key(data: dict[str, Any]) -> Any:
    """Create an API key, shown once in the answer.

    `user_id` defaults to the caller; only an admin may create a key for
    someone else. Only the key's hash is stored.
    """
    c = ctx()
    assert c.actor is not None
    user_id = data.get("user_id") or c.actor.user_id
    if user_id != c.actor.user_id and not c.actor.at_least("admin"):
        raise Forbidden("only an admin can create keys for someone else")
    user = c.session.get(User, user_id)
    if user is None or user.tenant_id != c.tenant.id:
        raise NotFound(f"user {user_id} not found")
    row, key = svc.create_api_key(c.session, user, name=data["name"], now=c.now())
    commit()
    return {**{f: getattr(row, f) for f in s.ApiKey().fields}, "key": key}


@keys.route("/<int:key_id>", methods=["DELETE"])
@keys.response(200, s.ApiKey)
def revoke_key(key_id: int) -> Any:
    """Revoke an API key.

    The key answers 401 from now on. Non-admins may revoke only their own.
    """
    row = svc.revoke_api_key(ctx(), key_id)
    commit()
    return row


# --- deliveries -----------------------------------------------------------------


@deliveries.route("", methods=["GET"])
@deliveries.arguments(s.DeliveryFilter, location="query")
@deliveries.response(200, s.DeliveryPage)
@requires("admin")
def list_deliveries(args: dict[str, Any]) -> Any:
    """List event deliveries to plugins (admins): which failed, why, how often.

    Each delivery has its event, plugin, state, attempts, `last_error` (the
    exception's type and message) and next attempt. Filters: `state`,
    `plugin`.
    """
    c = ctx()
    stmt = select(Delivery)
    if args.get("state"):
        stmt = stmt.where(Delivery.state == args["state"])
    if args.get("plugin"):
        stmt = stmt.where(Delivery.plugin == args["plugin"])
    page = paginate(c.session, stmt, Delivery.id, args.get("cursor"), args["limit"])
    names = dict(c.session.execute(
        select(OutboxEvent.id, OutboxEvent.name).where(OutboxEvent.id.in_({d.event_id for d in page.items}))
    ).all()) if page.items else {}
    items = [
        {f: getattr(d, f) for f in ("id", "event_id", "plugin", "state", "attempts", "last_error",
                                    "next_attempt_at", "delivered_at")} | {"event": names.get(d.event_id, "")}
        for d in page.items
    ]
    return {"items": items, "next_cursor": page.next_cursor}


# --- outbound posts ---------------------------------------------------------------


@posts.route("", methods=["GET"])
@posts.arguments(s.PostFilter, location="query")
@posts.response(200, s.OutboundPostPage)
@requires("admin")
def list_posts(args: dict[str, Any]) -> Any:
    """List the webhooks plugins queued to the tenant's URLs (admins): sent, waiting, failed, and why.

    A plugin's event handler queues its POST (the pool's webhook, say) and
    it is sent after the handler's transaction commits, retried with
    backoff while the receiver fails. Each has its plugin, URL, event,
    status (`queued`, `sending`, `sent`, `failed`), attempts, the
    receiver's last `answer_status`, `last_error` and next attempt.
    Filters: `status`, `plugin`. Newest first.
    """
    c = ctx()
    stmt = select(OutboundPost)
    if args.get("status"):
        stmt = stmt.where(OutboundPost.status == args["status"])
    if args.get("plugin"):
        stmt = stmt.where(OutboundPost.plugin == args["plugin"])
    page = paginate(c.session, stmt, OutboundPost.id, args.get("cursor"), args["limit"])
    return {"items": page.items, "next_cursor": page.next_cursor}
