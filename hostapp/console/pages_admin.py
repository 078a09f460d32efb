"""Admin pages: users, teams and their strategy, routing rules with a preview, channels, API keys, deliveries.

Forms are generated from the API's own schemas (:mod:`.settings_form`) and
acted on through the core services, exactly as the API's admin views do.
A secret (a channel's signing key, an API key) is shown once, on the page
that created it, and never stored in clear by the console.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from marshmallow import Schema, ValidationError
from sqlalchemy import select

from pelago.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from pelago.core.events import deliver_one
from pelago.core.models import ApiKey, Channel, Delivery, OutboxEvent, Team, User
from pelago.core.pagination import paginate
from pelago.core.services import admin as svc
from pelago.core.services import channels as channel_svc
from pelago.core.services import routing as routing_svc

from ..api import channels as channel_api
from ..api import schemas as s
from ..auth import ctx
from . import bp, settings_form
from .web import _, back, console, console_requires, render_page

PAGE = 50
Errors = dict[str, list[str]]


def _team_options() -> list[tuple[str, str]]:
    return [(str(i), n) for i, n in ctx().session.execute(select(Team.id, Team.name).order_by(Team.name)).all()]


def _user_options() -> list[tuple[str, str]]:
    return [(str(u.id), u.name or u.email) for u in ctx().session.scalars(select(User).order_by(User.email))]


def _submit(schema: Schema, act: Any) -> tuple[Any, Errors, str | None]:
    """Parse the posted form with ``schema``, run ``act(data)``; ``(result, field errors, message)``."""
    c = ctx()
    try:
        data = schema.load(settings_form.parse(schema, request.form), unknown="exclude")
        return act(data), {}, None
    except settings_form.FormProblem as exc:
        return None, exc.errors, _("Please correct the fields marked below.")
    except InvalidInput as exc:
        c.session.rollback()
        return None, settings_form.flatten(exc.errors or {}), exc.message
    except ValidationError as exc:
        return None, settings_form.flatten(exc.messages), _("Please correct the fields marked below.")
    except (Conflict, Forbidden, NotFound) as exc:
        c.session.rollback()
        return None, {}, exc.message


def _form(schema: Schema, values: dict[str, Any] | None = None, **options: list[tuple[str, str]]) -> Any:
    fields = settings_form.describe(schema, values or {}, options=options)
    if request.method == "POST":
        from .pages_plugins import _keep_posted

        _keep_posted(fields, request.form)
    return fields


# --- users ---------------------------------------------------------------------


@bp.route("/users", methods=["GET", "POST"])
@console_requires("admin")
def users() -> Any:
    c = ctx()
    errors: Errors = {}
    error = None
    if request.method == "POST":
        def act(data: dict[str, Any]) -> Any:
            return svc.create_user(c.session, tenant_id=c.tenant.id, now=c.now(), by=c.actor, **data)

        user, errors, error = _submit(s.UserArgs(), act)
        if user is not None:
            return back("console.user", _("User created."), user_id=user.id)
    rows = list(c.session.scalars(select(User).order_by(User.email)))
    teams = dict(c.session.execute(select(Team.id, Team.name)).all())
    html = render_page("console/users.html", rows=rows, teams=teams, errors=errors, error=error,
                       fields=_form(s.UserArgs(), {"role": "rep"}, team_id=_team_options()),
                       prefix=settings_form.PREFIX + ".")
    return html, 422 if error else 200


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@console_requires("admin")
def user(user_id: int) -> Any:
    """Role, team, leave, working hours, capacity, weight, active, and a password reset."""
    c = ctx()
    row = svc.get_user(c, user_id)
    errors: Errors = {}
    error = None
    if request.method == "POST":
        done, errors, error = _submit(s.UserPatch(), lambda data: svc.update_user(c, row, data))
        if done is not None:
            return back("console.user", _("Saved."), user_id=user_id)
        row = svc.get_user(c, user_id)
    values = {k: getattr(row, k) for k in s.UserPatch().fields if k != "password"}
    html = render_page("console/user.html", row=row, errors=errors, error=error,
                       fields=_form(s.UserPatch(), values, team_id=_team_options()),
                       prefix=settings_form.PREFIX + ".")
    return html, 422 if error else 200


# --- teams ---------------------------------------------------------------------


@bp.route("/teams", methods=["GET", "POST"])
@console_requires("admin")
def teams() -> Any:
    c = ctx()
    errors: Errors = {}
    error = None
    if request.method == "POST":
        team, errors, error = _submit(s.TeamArgs(), lambda data: svc.create_team(c, data))
        if team is not None:
            return back("console.teams", _("Saved."))
    rows = list(c.session.scalars(select(Team).order_by(Team.name)))
    html = render_page("console/teams.html", rows=rows, errors=errors, error=error, fields=_form(s.TeamArgs()),
                       prefix=settings_form.PREFIX + ".")
    return html, 422 if error else 200


@bp.route("/teams/<int:team_id>", methods=["GET", "POST"])
@console_requires("admin")
def team(team_id: int) -> Any:
    c = ctx()
    row = svc.get_team(c, team_id)
    errors: Errors = {}
    error = None
    if request.method == "POST":
        done, errors, error = _submit(s.TeamPatch(), lambda data: svc.update_team(c, row, data))
        if done is not None:
            return back("console.teams", _("Saved."))
        row = svc.get_team(c, team_id)
    values = {k: getattr(row, k) for k in s.TeamPatch().fields}
    html = render_page("console/team.html", row=row, errors=errors, error=error,
                       fields=_form(s.TeamPatch(), values), prefix=settings_form.PREFIX + ".")
    return html, 422 if error else 200


# --- routing -------------------------------------------------------------------


@bp.route("/routing", methods=["GET", "POST"])
@console_requires("admin")
def routing() -> Any:
    """The rules in priority order, a form for a new one, and the preview: where would this lead go, and why."""
    c = ctx()
    errors: Errors = {}
    error = None
    preview = None
    preview_errors: Errors = {}
    action = request.form.get("action")
    if request.method == "POST" and action == "create":
        rule, errors, error = _submit(s.RuleArgs(), lambda data: routing_svc.save_rule(c, data))
        if rule is not None:
            return back("console.routing", _("Saved."))
    elif request.method == "POST" and action == "preview":
        preview, preview_errors, error = _submit(s.PreviewArgs(), lambda data: routing_svc.preview(c, data))
        c.session.rollback()  # a preview writes nothing
    rules = routing_svc.list_rules(c)
    teams = dict(c.session.execute(select(Team.id, Team.name)).all())
    html = render_page(
        "console/routing.html", rules=rules, teams=teams, errors=errors, error=error, preview=preview,
        preview_errors=preview_errors, people=dict(_user_options()),
        fields=_form(s.RuleArgs(), {}, team_id=_team_options()) if action != "preview"
        else settings_form.describe(s.RuleArgs(), {}, options={"team_id": _team_options()}),
        preview_fields=settings_form.describe(s.PreviewArgs(), {}, prefix="p",
                                              options={"team_id": _team_options()}),
        prefix=settings_form.PREFIX + ".",
    )
    return html, 422 if error else 200


@bp.post("/routing/<int:rule_id>/delete")
@console_requires("admin")
def delete_rule(rule_id: int) -> Any:
    c = ctx()
    routing_svc.delete_rule(c, routing_svc.get_rule(c, rule_id))
    return back("console.routing", _("Deleted."))


# --- channels ------------------------------------------------------------------


def _signing_example(channel: Any, secret: str) -> str:
    body = b'{"name": "\\u5f20\\u4e09", "phone": "13800138000"}'
    return (f"POST {request.host_url.rstrip('/')}/api/v1/intake/{channel.key}\n"
            f"Content-Type: application/json\n"
            f"X-Pelago-Signature: {channel_svc.signature(secret, body)}\n\n{body.decode()}")


@bp.route("/channels", methods=["GET", "POST"])
@console_requires("admin")
def channels() -> Any:
    """Webhook channels; a new channel's (or a rotated) secret is shown once, with a copy button."""
    c = ctx()
    errors: Errors = {}
    error = None
    created = None
    if request.method == "POST":
        created, errors, error = _submit(channel_api.ChannelArgs(), lambda data: channel_svc.create_channel(c, data))
        if created is not None:
            c.session.commit()
    rows = list(c.session.scalars(select(Channel).order_by(Channel.id)))
    html = render_page(
        "console/channels.html", rows=rows, errors=errors, error=error, created=created,
        example=_signing_example(created, created.secret) if created is not None else None,
        fields=_form(channel_api.ChannelArgs(), {"active": True}), prefix=settings_form.PREFIX + ".",
    )
    return html, 422 if error else 200


@bp.post("/channels/<int:channel_id>/rotate")
@console_requires("admin")
def rotate_channel(channel_id: int) -> Any:
    c = ctx()
    channel = channel_svc.rotate_secret(c, channel_svc.get_channel(c, channel_id))
    c.session.commit()
    rows = list(c.session.scalars(select(Channel).order_by(Channel.id)))
    return render_page("console/channels.html", rows=rows, errors={}, created=channel,
                       example=_signing_example(channel, channel.secret),
                       fields=settings_form.describe(channel_api.ChannelArgs(), {"active": True}),
                       prefix=settings_form.PREFIX + ".")


# --- API keys ------------------------------------------------------------------


@bp.route("/api-keys", methods=["GET", "POST"])
def api_keys() -> Any:
    """One's own keys (admins: everyone's); a new key is shown once."""
    c = ctx()
    me = console().user
    new_key = None
    error = None
    if request.method == "POST":
        name = (request.form.get("name") or "").strip()[:200]
        owner_id = int(request.form["user_id"]) if request.form.get("user_id", "").isdigit() else me.id
        if owner_id != me.id and not console().at_least("admin"):
            raise Forbidden("only an admin can create keys for someone else")
        owner = c.session.get(User, owner_id)
        if owner is None or owner.tenant_id != c.tenant.id:
            error = _("Page not found")
        else:
            _row, new_key = svc.create_api_key(c.session, owner, name=name, now=c.now())
            c.session.commit()
    stmt = select(ApiKey).where(ApiKey.tenant_id == c.tenant.id)
    if not console().at_least("admin"):
        stmt = stmt.where(ApiKey.user_id == me.id)
    rows = list(c.session.scalars(stmt.order_by(ApiKey.id.desc()).limit(200)))
    return render_page("console/api_keys.html", rows=rows, new_key=new_key, error=error,
                       people=dict(_user_options()))


@bp.post("/api-keys/<int:key_id>/revoke")
def revoke_key(key_id: int) -> Any:
    svc.revoke_api_key(ctx(), key_id)
    return back("console.api_keys", _("Revoked"))


# --- deliveries ----------------------------------------------------------------


@bp.get("/deliveries")
@console_requires("admin")
def deliveries() -> Any:
    """Event deliveries to plugins, failed ones first by default, with a retry button."""
    c = ctx()
    state = request.args.get("state", "failed")
    stmt = select(Delivery)
    if state in ("pending", "delivered", "failed", "skipped"):
        stmt = stmt.where(Delivery.state == state)
    page = paginate(c.session, stmt, Delivery.id, request.args.get("cursor"), PAGE)
    ids = {d.event_id for d in page.items}
    names = dict(c.session.execute(select(OutboxEvent.id, OutboxEvent.name).where(OutboxEvent.id.in_(ids))).all()) \
        if ids else {}
    return render_page("console/deliveries.html", rows=page.items, names=names, state=state,
                       next_cursor=page.next_cursor)


@bp.post("/deliveries/<int:delivery_id>/retry")
@console_requires("admin")
def retry_delivery(delivery_id: int) -> Any:
    """Run one failed delivery again now (its own transaction, as the scheduler's retries do)."""
    c = ctx()
    found = c.session.scalar(select(Delivery.id).where(Delivery.id == delivery_id))  # this tenant's only
    if found is None:
        raise NotFound(f"delivery {delivery_id} not found")
    c.session.commit()  # end this read before the delivery's own transaction (SQLite has one writer)
    outcome = deliver_one(current_app.extensions["pelago"], delivery_id)
    return back("console.deliveries", _("Retried: {outcome}", outcome=outcome or "-"), state="failed")

