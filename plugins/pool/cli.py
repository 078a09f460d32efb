"""``pelago pool …``: the sweep from the shell, for one tenant or every tenant with the pool on."""

from __future__ import annotations

import click

from pelago.plugin import Lead, Runtime, find_tenant, pass_runtime, tenant_context, tenants_with


@click.group("pool")
def commands() -> None:
    """The public pool (公海)."""


@commands.command("sweep")
@click.option("--tenant", "slug", help="only this tenant (default: every tenant with the pool on)")
@click.option("--dry-run", is_flag=True, help="show what would be recycled and reminded; write nothing")
@click.option("--batch", type=click.IntRange(100, 5000), help="leads per transaction (default: the tenant's setting)")
@pass_runtime
def sweep_command(runtime: Runtime, slug: str | None, dry_run: bool, batch: int | None) -> None:
    """Recycle unworked leads into their pools now, and send due reminders."""
    from sqlalchemy import func, select

    from . import sweep as sweeping

    if "pool" not in runtime.host.specs:
        raise click.ClickException("the pool plugin is not deployed (PELAGO_PLUGINS)")
    tenant_ids = [find_tenant(runtime, slug)] if slug else tenants_with(runtime, "pool")
    for tenant_id in tenant_ids:
        with tenant_context(runtime, tenant_id) as ctx:
            name = ctx.tenant.slug
            if "pool" not in ctx.tenant.enabled:
                click.echo(f"{name}: skipped, the pool is off for this tenant")
                continue
            total = ctx.session.scalar(select(func.count()).select_from(Lead)) or 0
            with click.progressbar(length=total, label=f"{name}: sweeping {total} leads") as bar:
                report = sweeping.run(ctx, dry_run=dry_run, trigger="cli", batch=batch, progress=bar.update)
            rules = ", ".join(f"{k} {v}" for k, v in sorted(report.by_rule.items())) or "none"
            verb = "would recycle" if dry_run else "recycled"
            click.echo(
                f"{name}: {verb} {report.released} ({rules}); "
                f"{'would remind' if dry_run else 'reminded'} {report.reminded}; vetoed {report.vetoed}; "
                f"{report.batches} batches, longest {report.longest_batch * 1000:.0f} ms"
                + ("" if dry_run else f"; sweep #{report.sweep_id}")
            )
