"""A tenant's routing configuration, read once per configuration version and shared.

Routing asks for the same things on every lead: the tenant's routing
settings, its active rules and each team's active reps and managers (with
their leave, working hours, capacity and weight). They change when an admin
edits them, which is rare, so each process keeps them per tenant in an
immutable :class:`RoutingConfig`, keyed by the tenant's routing version
(``core_routing_version``), the way the host keeps the plugin switches per
``plugins_version``.

The version is bumped in the transaction of the edit itself (the
``before_flush`` listener of :mod:`pelago.core.db`), so every process, on
every database, sees the edit on its next request: no restart, no stale
routing, no message between processes. What stays per request is what moves
per lead: the team rows (locked, with the round-robin pointer) and the daily
counts. A transaction that changed the configuration itself reads it fresh
and never caches what it has not committed.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from .db import ROUTING_BUMPED, ROUTING_KNOWN, ROUTING_TABLES
from .models import RoutingRule, RoutingSettings, RoutingVersion, User
from .snapshots import UserInfo, frozen

KNOWN_VERSION = ROUTING_KNOWN


@dataclass(frozen=True)
class Rule:
    """An active routing rule, its ``match`` as sets of accepted values."""

    id: int
    name: str
    team_id: int
    match: Mapping[str, frozenset[Any]]


@dataclass(frozen=True)
class RoutingConfig:
    """The routing configuration of one tenant at one version; immutable, shared between threads."""

    tenant_id: int
    version: int
    auto_routing: bool
    default_team_id: int | None
    handoff_enabled: bool
    repurchase_team_id: int | None
    rules: tuple[Rule, ...]  # active ones, lowest priority first, then oldest
    members: Mapping[int, tuple[UserInfo, ...]]  # team id → its active reps and managers, by id

    def candidates(self, team_id: int) -> list[UserInfo]:
        return list(self.members.get(team_id, ()))


_caches: weakref.WeakKeyDictionary[Engine, dict[int, RoutingConfig]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def routing_config(session: Session, tenant_id: int) -> RoutingConfig:
    """The tenant's routing configuration as ``session``'s transaction should see it.

    Cached per engine (one database) and tenant, used while the tenant's
    version is the one cached. The version comes from the request's
    credential query when there was one (``KNOWN_VERSION``), otherwise from one
    primary-key read.
    """
    if session.new or session.dirty or session.deleted:
        session.flush()  # pending edits of the configuration bump the version now
    if tenant_id in session.info.get(ROUTING_BUMPED, ()):
        return _load(session, tenant_id, _version(session, tenant_id))  # uncommitted: never cached
    engine = session.get_bind()
    cache = _caches.get(engine)  # type: ignore[arg-type]
    known = session.info.get(KNOWN_VERSION)
    version = known[1] if known is not None and known[0] == tenant_id else _version(session, tenant_id)
    if cache is not None:
        config = cache.get(tenant_id)
        if config is not None and config.version == version:
            return config
    if known is not None:
        version = _version(session, tenant_id)  # read with the data it keys
        session.info.pop(KNOWN_VERSION, None)
    config = _load(session, tenant_id, version)
    with _lock:
        cache = _caches.setdefault(engine, {})  # type: ignore[arg-type]
        current = cache.get(tenant_id)
        if current is None or current.version <= version:
            cache[tenant_id] = config
    return config


def _version(session: Session, tenant_id: int) -> int:
    found = session.scalar(
        select(RoutingVersion.version).where(RoutingVersion.tenant_id == tenant_id)
        .execution_options(all_tenants=True)
    )
    return int(found or 0)


def _load(session: Session, tenant_id: int, version: int) -> RoutingConfig:
    settings = session.scalars(
        select(RoutingSettings).where(RoutingSettings.tenant_id == tenant_id).execution_options(all_tenants=True)
    ).first()
    rules = session.scalars(
        select(RoutingRule)
        .where(RoutingRule.tenant_id == tenant_id, RoutingRule.active.is_(True))
        .order_by(RoutingRule.priority, RoutingRule.id)
        .execution_options(all_tenants=True)
    ).all()
    members: dict[int, list[UserInfo]] = {}
    for user in session.scalars(
        select(User)
        .where(User.tenant_id == tenant_id, User.team_id.is_not(None), User.active.is_(True),
               User.role.in_(("rep", "manager")))
        .order_by(User.id)
        .execution_options(all_tenants=True)
    ):
        info = UserInfo.of(user)
        if info.working_hours is not None:  # shared by every request and thread: read-only
            info = replace(info, working_hours=frozen(info.working_hours))
        members.setdefault(int(user.team_id or 0), []).append(info)
    return RoutingConfig(
        tenant_id=tenant_id,
        version=version,
        auto_routing=bool(settings and settings.auto_routing),
        default_team_id=settings.default_team_id if settings else None,
        handoff_enabled=bool(settings and settings.handoff_enabled),
        repurchase_team_id=settings.repurchase_team_id if settings else None,
        rules=tuple(
            Rule(r.id, r.name, r.team_id, MappingProxyType({k: frozenset(v) for k, v in (r.match or {}).items()}))
            for r in rules
        ),
        members=MappingProxyType({team: tuple(users) for team, users in members.items()}),
    )


def forget(engine: Engine | None = None) -> None:
    """Drop the cached configurations (of one engine, or all): tests, and after raw SQL edits."""
    with _lock:
        if engine is None:
            _caches.clear()
        else:
            _caches.pop(engine, None)


__all__ = ["KNOWN_VERSION", "ROUTING_TABLES", "Rule", "RoutingConfig", "forget", "routing_config"]
