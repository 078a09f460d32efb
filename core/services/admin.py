"""Tenant administration: tenants, users, teams and API keys."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ..context import Actor, HookContext
from ..db import flush_or_conflict
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from ..models import ROLE_RANK, ApiKey, ConsoleSession, Team, Tenant, User
from ..money import currency_code
from ..security import hash_password, new_api_key

# --- tenants (operator) ---------------------------------------------------------

#: what a tenant slug looks like: the API, the CLI and ``X-Pelago-Tenant`` all check this one pattern
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
SLUG_RULE = "2-63 characters: lowercase letters, digits and '-', not starting with '-'"


def check_slug(slug: str) -> str:
    """``slug`` if it is a valid tenant slug, else :class:`InvalidInput` under ``slug``."""
    if not isinstance(slug, str) or not SLUG.fullmatch(slug):
        raise InvalidInput("invalid slug", {"slug": [SLUG_RULE]})
    return slug


def create_tenant(
    session: Session, *, slug: str, name: str | None = None, timezone: str = "Asia/Shanghai",
    default_region: str = "CN", currency: str = "CNY", now: Any,
) -> Tenant:
    check_slug(slug)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a tz folder such as 'Asia'
        raise InvalidInput("unknown timezone", {"timezone": [f"{timezone!r} is not an IANA timezone"]}) from None
    import phonenumbers

    if default_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidInput("unknown region", {"default_region": [f"{default_region!r} is not a region code"]})
    try:
        currency = currency_code(currency)
    except ValueError as exc:
        raise InvalidInput("unknown currency", {"currency": [str(exc)]}) from None
    tenant = Tenant(
        slug=slug, name=name or slug, timezone=timezone, default_region=default_region.upper(),
        currency=currency, plugins_version=0, created_at=now,
    )
    session.add(tenant)
    flush_or_conflict(session, f"a tenant with slug {slug!r} exists", {"slug": ["already taken"]})
    return tenant


# --- users --------------------------------------------------------------------


def create_user(
    session: Session, *, tenant_id: int | None, email: str, role: str, name: str = "",
    team_id: int | None = None, password: str | None = None, now: Any, by: Actor | None = None,
) -> User:
    """A user of ``tenant_id`` (``None`` and role ``operator`` for an installation operator)."""
    if role not in ROLE_RANK:
        raise InvalidInput("unknown role", {"role": [f"must be one of {', '.join(ROLE_RANK)}"]})
    if (role == "operator") != (tenant_id is None):
        raise InvalidInput(
            "operators belong to no tenant; everyone else to one",
            {"role": ["operator needs no tenant" if role == "operator" else "needs a tenant"]},
        )
    if by is not None and by.role != "operator" and ROLE_RANK[role] > ROLE_RANK[by.role]:
        raise Forbidden(f"a {by.role} cannot create a {role}")
    if team_id is not None:
        _team(session, tenant_id, team_id)
    user = User(
        tenant_id=tenant_id, email=email.strip().lower(), role=role, name=name, team_id=team_id,
        active=True, on_leave=False, password_hash=hash_password(password) if password else None,
        created_at=now,
    )
    session.add(user)
    flush_or_conflict(session, f"a user with email {email!r} exists", {"email": ["already taken"]})
    return user


def update_user(ctx: HookContext, user: User, data: Mapping[str, Any]) -> User:
    actor = ctx.actor
    if "role" in data and data["role"] != user.role:
        if data["role"] == "operator":
            raise InvalidInput("operators belong to no tenant", {"role": ["cannot be operator"]})
        if actor is not None and actor.role != "operator" and ROLE_RANK[data["role"]] > ROLE_RANK[actor.role]:
            raise Forbidden(f"a {actor.role} cannot make someone {data['role']}")
    if data.get("team_id") is not None:
        _team(ctx.session, ctx.tenant.id, data["team_id"])
    if _stops_being_admin(user, data):
        keep_an_admin(ctx.session, user)
    for field in ("name", "role", "team_id", "active", "on_leave", "daily_capacity", "weight", "working_hours"):
        if field in data:
            setattr(user, field, data[field])
    if data.get("password"):
        user.password_hash = hash_password(data["password"])
        # a new password ends the console sessions signed in with the old one
        ctx.session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id))
    if data.get("active") is False:
        ctx.session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id))
    ctx.session.flush()
    return user


MIN_PASSWORD = 8


def check_new_password(password: str) -> None:
    """A console password: at least 8 characters (a longer one is the user's choice)."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput("password too short", {"password": [f"at least {MIN_PASSWORD} characters"]})
    if len(password) > 200:
        raise InvalidInput("password too long", {"password": ["at most 200 characters"]})


def set_password(session: Session, *, tenant_id: int, email: str, password: str) -> User:
    """Set the console password of ``email`` in ``tenant_id`` and end that user's console sessions."""
    check_new_password(password)
    user = session.scalars(select(User).where(User.tenant_id == tenant_id, User.email == email.strip().lower())
                           ).first()
    if user is None:
        raise NotFound(f"no user {email!r} in this tenant")
    user.password_hash = hash_password(password)
    session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id))
    session.flush()
    return user


def _stops_being_admin(user: User, data: Mapping[str, Any]) -> bool:
    was = user.role == "admin" and user.active
    role, active = data.get("role", user.role), data.get("active", user.active)
    return was and not (role == "admin" and active)


def keep_an_admin(session: Session, user: User) -> None:
    """Refuse (409) to let ``user`` stop being an active admin if no other active admin is left.

    A tenant without an active admin is locked out of its own administration
    (every key of a deactivated user is refused), so the last one stays. The
    tenant's active admin rows are locked (``FOR UPDATE``) before they are
    counted: two admins deactivating each other at once take turns, and the
    second one finds the first gone and is refused. On PostgreSQL a row that
    the first transaction changed is checked again after it commits, and
    drops out of the locked set; SQLite serialises writers anyway.
    """
    others = session.scalars(
        select(User.id).where(User.tenant_id == user.tenant_id, User.role == "admin", User.active.is_(True))
        .order_by(User.id).with_for_update()
    ).all()
    if not [i for i in others if i != user.id]:
        raise Conflict(
            "the last active admin of a tenant cannot be deactivated or demoted; make another admin first",
            {"user_id": user.id},
        )


def activate_user(session: Session, *, tenant_id: int, email: str, role: str | None = None) -> User:
    """Reactivate a tenant's user by email, optionally with a new ``role`` (``pelago users activate``).

    The way back in for a tenant whose admins are all inactive (a database
    from before the last admin was kept, or a tenant set up by hand).
    """
    if role not in (None, "admin", "manager", "rep"):
        raise InvalidInput("unknown role", {"role": ["must be one of admin, manager, rep"]})
    user = session.scalars(
        select(User).where(User.tenant_id == tenant_id, User.email == email.strip().lower())
    ).first()
    if user is None:
        raise NotFound(f"no user {email} in this tenant")
    if role is not None and role != user.role and _stops_being_admin(user, {"role": role, "active": True}):
        keep_an_admin(session, user)
    user.active = True
    if role is not None:
        user.role = role
    session.flush()
    return user


def get_user(ctx: HookContext, user_id: int) -> User:
    user = ctx.session.get(User, user_id)
    if user is None or user.tenant_id != ctx.tenant.id:
        raise NotFound(f"user {user_id} not found")
    return user


def _team(session: Session, tenant_id: int | None, team_id: int) -> Team:
    team = session.get(Team, team_id)
    if team is None or team.tenant_id != tenant_id:
        raise InvalidInput("unknown team", {"team_id": [f"no team {team_id} in this tenant"]})
    return team


# --- teams --------------------------------------------------------------------


def create_team(ctx: HookContext, data: Mapping[str, Any]) -> Team:
    team = Team(
        name=data["name"], description=data.get("description", ""), active=True,
        strategy=data.get("strategy", "round_robin"), created_at=ctx.now(),
    )
    ctx.session.add(team)
    flush_or_conflict(ctx.session, f"a team named {data['name']!r} exists", {"name": ["already taken"]})
    return team


def get_team(ctx: HookContext, team_id: int) -> Team:
    team = ctx.session.get(Team, team_id)
    if team is None or team.tenant_id != ctx.tenant.id:
        raise NotFound(f"team {team_id} not found")
    return team


def update_team(ctx: HookContext, team: Team, data: Mapping[str, Any]) -> Team:
    for field in ("name", "description", "active", "strategy"):
        if field in data:
            setattr(team, field, data[field])
    flush_or_conflict(ctx.session, "a team with that name exists", {"name": ["already taken"]})
    return team


# --- API keys -----------------------------------------------------------------


def create_api_key(session: Session, user: User, *, name: str = "", now: Any) -> tuple[ApiKey, str]:
    """A new key for ``user``; the clear key is returned here and never again."""
    key, prefix, digest = new_api_key()
    row = ApiKey(
        tenant_id=user.tenant_id, user_id=user.id, name=name, prefix=prefix, secret_hash=digest,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row, key


def revoke_api_key(ctx: HookContext, key_id: int) -> ApiKey:
    row = session_key(ctx, key_id)
    if row.revoked_at is None:
        ctx.session.execute(
            update(ApiKey).where(ApiKey.id == row.id, ApiKey.revoked_at.is_(None)).values(revoked_at=ctx.now())
        )
        ctx.session.refresh(row)
    return row


def session_key(ctx: HookContext, key_id: int) -> ApiKey:
    row = ctx.session.scalars(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == ctx.tenant.id)
    ).first()
    if row is None:
        raise NotFound(f"api key {key_id} not found")
    if ctx.actor is not None and not ctx.actor.at_least("admin") and row.user_id != ctx.actor.user_id:
        raise NotFound(f"api key {key_id} not found")
    return row
