"""Per-tenant plugin switches and settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import select, update

from ..context import HookContext
from ..events import emit
from ..models import Tenant, TenantPlugin


def configure(
    ctx: HookContext, name: str, *, enabled: bool | None = None, settings: Mapping[str, Any] | None = None
) -> HookContext:
    """Switch ``name`` on or off and/or change its settings for ``ctx.tenant``.

    The tenant row is locked first, so concurrent switches are serialised and
    the ``requires`` checks see the latest state; the tenant's
    ``plugins_version`` is bumped in the same transaction, which is what makes
    every app server and worker see the change on its next request or job.
    Returns a context whose tenant state reflects the change.
    """
    host, session = ctx.host, ctx.session
    spec = host.spec(name)
    tenant = session.scalars(select(Tenant).where(Tenant.id == ctx.tenant.id).with_for_update()).one()
    session.refresh(tenant)
    state = host.tenant_state(session, tenant, cache=False)
    row = session.get(TenantPlugin, (tenant.id, name))
    was_on = name in state.enabled
    if enabled is True and not was_on:
        host.check_enable(state, name)
    if enabled is False and was_on:
        host.check_disable(state, name)
    stored = host.validate_settings(name, settings or {}, row.settings if row else state.settings.get(name, {}))
    if spec.settings is None:
        stored = {}
    now = ctx.now()
    actor_id = ctx.actor.user_id if ctx.actor else None
    if row is None:
        row = TenantPlugin(
            tenant_id=tenant.id, plugin=name, enabled=was_on if enabled is None else enabled,
            settings=stored, updated_by=actor_id, updated_at=now,
        )
        session.add(row)
    else:
        if enabled is not None:
            row.enabled = enabled
        row.settings = stored
        row.updated_by = actor_id
        row.updated_at = now
    session.flush()
    session.execute(
        update(Tenant).where(Tenant.id == tenant.id).values(plugins_version=Tenant.plugins_version + 1)
    )
    session.refresh(tenant)
    new_state = host.tenant_state(session, tenant, cache=False)
    new_ctx = replace(ctx, tenant=new_state)
    now_on = name in new_state.enabled
    if now_on and not was_on:
        emit(new_ctx, "plugin_enabled", [{"plugin": name}])
    elif was_on and not now_on:
        emit(new_ctx, "plugin_disabled", [{"plugin": name}])
    before, after = state.settings.get(name, {}), new_state.settings.get(name, {})
    changed = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
    if changed:
        emit(new_ctx, "plugin_settings_changed", [{"plugin": name, "changed": changed}])
    return new_ctx
