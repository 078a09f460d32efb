"""``pelago conversions …``: send due conversions now, from the shell (a worker of its own)."""

from __future__ import annotations

import click

from pelago.plugin import Runtime, find_tenant, pass_runtime, tenant_context, tenants_with


@click.group("conversions")
def commands() -> None:
    """Conversions reported back to ad platforms (数据回传)."""


@commands.command("send")
@click.option("--tenant", "slug", help="only this tenant (default: every tenant with the plugin on)")
@pass_runtime
def send_command(runtime: Runtime, slug: str | None) -> None:
    """Claim and send every due conversion, as the periodic job does; prints what happened."""
    from . import sending

    if "conversions" not in runtime.host.specs:
        raise click.ClickException("the conversions plugin is not deployed (PELAGO_PLUGINS)")
    for tenant_id in [find_tenant(runtime, slug)] if slug else tenants_with(runtime, "conversions"):
        with tenant_context(runtime, tenant_id) as ctx:
            name = ctx.tenant.slug
            if "conversions" not in ctx.tenant.enabled:
                click.echo(f"{name}: skipped, conversions is off for this tenant")
                continue
            done = sending.send_due(ctx)
            counts = ", ".join(f"{k} {v}" for k, v in sorted(done.counts.items())) or "nothing due"
            click.echo(f"{name}: claimed {done.claimed}; {counts}")
