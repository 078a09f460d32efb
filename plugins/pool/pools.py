"""Pools: the default one, team pools, who may use and administer each, and their settings.

Who may **use** a pool (see its leads, claim them): the users it names, the
members of its team, and, for a pool with neither team nor named members
(the default pool, say), everyone in the tenant. Who may **administer** it
(distribute, move, hide, create leads into it): tenant admins, the users it
names as ``admin``, and managers of its team (any manager, for a pool with no
team). Administering implies using.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import delete, select, text

from pelago.plugin import (
    Actor,
    Conflict,
    HookContext,
    InvalidInput,
    NotFound,
    Team,
    User,
    flush_or_conflict,
    insert_ignoring_conflict,
    per_transaction,
)

from .models import ConfigVersion, Pool, PoolMember
from .schemas import PoolSettings

PLUGIN = "pool"
DEFAULT_NAME = "Default pool"


@dataclass(frozen=True)
class PoolInfo:
    """A pool as the services use it: settings loaded, and the caller's standing."""

    id: int
    name: str
    team_id: int | None
    is_default: bool
    settings: Mapping[str, Any]
    named: bool  # names members or admins
    role: str | None  # the caller's named role on it


_settings_cache: dict[tuple[int, str], Mapping[str, Any]] = {}
_cache_lock = threading.Lock()


def settings_of(pool_id: int, stored: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A pool's validated settings with defaults, loaded once per stored value."""
    key = (pool_id, json.dumps(stored, sort_keys=True, default=str))
    found = _settings_cache.get(key)
    if found is None:
        found = PoolSettings().load(dict(stored or {}))
        with _cache_lock:
            if len(_settings_cache) > 10_000:
                _settings_cache.clear()
            _settings_cache[key] = found
    return found


def ensure_default(ctx: HookContext) -> int:
    """The id of the tenant's default pool, created on first use (concurrent-safe)."""
    found = ctx.session.scalar(select(Pool.id).where(Pool.is_default.is_(True)))
    if found is not None:
        return found
    now = ctx.now()
    created = insert_ignoring_conflict(
        ctx.session, Pool.__table__,
        {"tenant_id": ctx.tenant.id, "name": DEFAULT_NAME, "description": "", "team_id": None,
         "is_default": True, "settings": {}, "created_at": now, "updated_at": now},
        ["tenant_id"], text("is_default"),
    )
    if created is not None:
        return created
    found = ctx.session.scalar(select(Pool.id).where(Pool.is_default.is_(True)))
    assert found is not None  # the conflicting row committed: it is visible now
    return found


P = Pool.__table__.c
V = ConfigVersion.__table__.c


class Stale(Exception):
    """The pools a statement was built from have changed since they were cached: load them and redo it."""


@dataclass(frozen=True)
class _Config:
    """A tenant's pools and their named users, as of ``version`` (see :class:`.models.ConfigVersion`)."""

    version: int
    pools: tuple[tuple[int, str, int | None, bool, Mapping[str, Any]], ...]
    roles: Mapping[int, Mapping[int, str]]  # pool id -> {user id: role}
    by_user: dict[int | None, dict[int, PoolInfo]] = field(default_factory=dict, compare=False)

    def infos(self, user_id: int | None) -> dict[int, PoolInfo]:
        found = self.by_user.get(user_id)
        if found is None:
            found = {
                pid: PoolInfo(pid, name, team_id, is_default, settings, bool(self.roles.get(pid)),
                              self.roles.get(pid, {}).get(user_id) if user_id is not None else None)
                for pid, name, team_id, is_default, settings in self.pools
            }
            if len(self.by_user) < 10_000:
                self.by_user[user_id] = found
        return found


#: PostgreSQL: each database's tenants' pools as last read by this process, checked against the version
#: before use (keyed by engine: versions are only unique within one database)
_configs: weakref.WeakKeyDictionary[Any, dict[int, _Config]] = weakref.WeakKeyDictionary()


def _cache(ctx: HookContext) -> dict[int, _Config]:
    bind = ctx.session.get_bind()
    found = _configs.get(bind)
    if found is None:
        found = _configs.setdefault(bind, {})
    return found


def _version(ctx: HookContext) -> int:
    return ctx.session.scalar(select(V.version).where(V.tenant_id == ctx.tenant.id)) or 0


def _read(ctx: HookContext) -> _Config:
    """The tenant's pools from the database; the version is read first, so it is never newer than the rows."""
    postgresql = ctx.session.get_bind().dialect.name == "postgresql"
    version = _version(ctx) if postgresql else 0
    cached = _cache(ctx).get(ctx.tenant.id)
    if postgresql and cached is not None and cached.version == version:
        return cached
    rows = ctx.session.execute(
        select(P.id, P.name, P.team_id, P.is_default, P.settings).where(P.tenant_id == ctx.tenant.id).order_by(P.id)
    ).all()
    roles: dict[int, dict[int, str]] = {}
    for pool_id, user_id, role in ctx.session.execute(
        select(PoolMember.pool_id, PoolMember.user_id, PoolMember.role).where(PoolMember.tenant_id == ctx.tenant.id)
    ):
        roles.setdefault(pool_id, {})[user_id] = role
    config = _Config(version, tuple((r.id, r.name, r.team_id, r.is_default, settings_of(r.id, r.settings))
                                    for r in rows), roles)
    if postgresql and any(r.is_default for r in rows):
        _cache(ctx)[ctx.tenant.id] = config
    return config


def load(ctx: HookContext, user_id: int | None = None) -> dict[int, PoolInfo]:
    """Every pool of the tenant, with ``user_id``'s named role on each, as of now.

    Remembered for the rest of the transaction (an assignment asks for them
    again through ``check_assign``); :func:`create` and :func:`update` forget it.
    On PostgreSQL a cached copy is used when the tenant's config version
    (one indexed read) says it is current.
    """
    memo = _memo(ctx)
    if "config" not in memo:
        config = _read(ctx)
        if not any(p[3] for p in config.pools):
            ensure_default(ctx)  # first use by this tenant
            config = _read(ctx)
        memo["config"] = config
    return memo["config"].infos(user_id)  # type: ignore[no-any-return]


def cached(ctx: HookContext, user_id: int) -> tuple[dict[int, PoolInfo], int | None]:
    """The pools as :func:`load` gives them, without a query when this process has them cached.

    Returns ``(pools, version)``: ``version`` is the config version the pools
    are of, for the caller's statement to check (raising :class:`Stale` when
    it no longer holds), or ``None`` when they were read in this transaction.
    """
    memo = _memo(ctx)
    config = _cache(ctx).get(ctx.tenant.id) if "config" not in memo else None
    if config is None:
        return load(ctx, user_id), None
    return config.infos(user_id), config.version


def verified(ctx: HookContext, version: int) -> None:
    """The caller's statement found the config at ``version``: the cached copy holds for this transaction."""
    config = _cache(ctx).get(ctx.tenant.id)
    if config is not None and config.version == version:
        _memo(ctx).setdefault("config", config)


def _memo(ctx: HookContext) -> dict[str, Any]:
    return per_transaction(ctx.session, "pool_pools")


def forget(ctx: HookContext) -> None:
    ctx.session.info.pop("pool_pools", None)


def can_admin(pool: PoolInfo, actor: Actor | None) -> bool:
    if actor is None:
        return True  # the system (jobs, commands)
    if actor.at_least("admin") or pool.role == "admin":
        return True
    return actor.role == "manager" and (pool.team_id is None or pool.team_id == actor.team_id)


def can_use(pool: PoolInfo, actor: Actor | None) -> bool:
    if can_admin(pool, actor) or pool.role is not None:
        return True
    assert actor is not None
    if pool.team_id is not None:
        return actor.team_id == pool.team_id
    return not pool.named


def visible(ctx: HookContext, pool_id: int) -> tuple[PoolInfo, dict[int, PoolInfo]]:
    """The pool if the caller may use it, else 404 (also for another tenant's pool)."""
    pools = load(ctx, ctx.actor.user_id if ctx.actor else None)
    pool = pools.get(pool_id)
    if pool is None or not can_use(pool, ctx.actor):
        raise NotFound(f"pool {pool_id} not found")
    return pool, pools


def administered(ctx: HookContext, pool_id: int) -> PoolInfo:
    pool, _ = visible(ctx, pool_id)
    if not can_admin(pool, ctx.actor):
        raise NotFound(f"pool {pool_id} not found among the pools you administer")
    return pool


def home(pools: Mapping[int, PoolInfo], team_id: int | None) -> PoolInfo:
    """The pool whose rules cover a lead (or a rep) of ``team_id``: the team's, else the default."""
    default = None
    for pool in pools.values():
        if team_id is not None and pool.team_id == team_id:
            return pool
        if pool.is_default:
            default = pool
    assert default is not None
    return default


# --- editing ---------------------------------------------------------------------------


def validated(settings: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``settings`` merged into ``current`` (each recycle rule whole), validated: 422 naming the field."""
    merged = dict(current or {})
    for key, value in settings.items():
        if key == "recycle" and isinstance(value, Mapping) and isinstance(merged.get("recycle"), Mapping):
            merged["recycle"] = {**merged["recycle"], **value}
        else:
            merged[key] = value
    schema = PoolSettings()
    try:
        return dict(schema.dump(schema.load(merged)))
    except ValidationError as err:
        raise InvalidInput("invalid pool settings", {"settings": err.messages}) from None


def _check_team(ctx: HookContext, team_id: int | None) -> None:
    if team_id is not None and ctx.session.get(Team, team_id) is None:
        raise InvalidInput("unknown team", {"team_id": [f"no team {team_id} in this tenant"]})


def _set_members(ctx: HookContext, pool: Pool, members: list[Mapping[str, Any]]) -> None:
    ids = [m["user_id"] for m in members]
    if len(set(ids)) != len(ids):
        raise InvalidInput("a user is named twice", {"members": ["each user at most once"]})
    known = set(ctx.session.scalars(select(User.id).where(User.id.in_(ids)))) if ids else set()
    missing = sorted(set(ids) - known)
    if missing:
        raise InvalidInput("unknown users", {"members": [f"no user {i} in this tenant" for i in missing]})
    ctx.session.execute(delete(PoolMember).where(PoolMember.pool_id == pool.id))
    ctx.session.add_all(PoolMember(pool_id=pool.id, user_id=m["user_id"], role=m["role"]) for m in members)


def create(ctx: HookContext, data: Mapping[str, Any]) -> Pool:
    forget(ctx)
    ensure_default(ctx)
    _check_team(ctx, data.get("team_id"))
    now = ctx.now()
    pool = Pool(name=data["name"], description=data.get("description", ""), team_id=data.get("team_id"),
                is_default=False, settings=validated(data.get("settings") or {}), created_at=now, updated_at=now)
    ctx.session.add(pool)
    flush_or_conflict(ctx.session, "a pool with this name, or for this team, already exists")
    _set_members(ctx, pool, data.get("members") or [])
    ctx.session.flush()
    return pool


def update(ctx: HookContext, pool: Pool, data: Mapping[str, Any]) -> Pool:
    forget(ctx)
    if "team_id" in data:
        _check_team(ctx, data["team_id"])
        if pool.is_default and data["team_id"] is not None:
            raise Conflict("the default pool serves every team without a pool of its own; it takes no team")
        pool.team_id = data["team_id"]
    for key in ("name", "description"):
        if key in data:
            setattr(pool, key, data[key])
    if "settings" in data:
        pool.settings = validated(data["settings"], pool.settings)
    if "members" in data:
        _set_members(ctx, pool, data["members"])
    pool.updated_at = ctx.now()
    flush_or_conflict(ctx.session, "a pool with this name, or for this team, already exists")
    return pool


def members(ctx: HookContext, pool_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in pool_ids}
    if pool_ids:
        rows = ctx.session.execute(
            select(PoolMember.pool_id, PoolMember.user_id, PoolMember.role)
            .where(PoolMember.pool_id.in_(pool_ids)).order_by(PoolMember.pool_id, PoolMember.user_id)
        )
        for pool_id, user_id, role in rows:
            out[pool_id].append({"user_id": user_id, "role": role})
    return out
