"""``pelago sms …``: the dispatch and the trigger scan from the shell, with a progress bar."""

from __future__ import annotations

import click

from pelago.plugin import Runtime, find_tenant, pass_runtime, tenant_context, tenants_with

PLUGIN = "sms_nurture"


@click.group("sms")
def commands() -> None:
    """SMS nurturing (also reachable as ``pelago sms_nurture``)."""


def _tenants(runtime: Runtime, slug: str | None) -> list[int]:
    if PLUGIN not in runtime.host.specs:
        raise click.ClickException("the sms_nurture plugin is not deployed (PELAGO_PLUGINS)")
    return [find_tenant(runtime, slug)] if slug else tenants_with(runtime, PLUGIN)


@commands.command("dispatch")
@click.option("--tenant", "slug", help="only this tenant (default: every tenant with the plugin on)")
@click.option("--batch", type=click.IntRange(1, 2000), help="messages claimed per transaction (default: the setting)")
@pass_runtime
def dispatch_command(runtime: Runtime, slug: str | None, batch: int | None) -> None:
    """Send every message that is due now: plan, reconcile, claim, check, send, record."""
    from . import dispatch as dispatching

    for tenant_id in _tenants(runtime, slug):
        with tenant_context(runtime, tenant_id) as ctx:
            name = ctx.tenant.slug
            if PLUGIN not in ctx.tenant.enabled:
                click.echo(f"{name}: skipped, sms_nurture is off for this tenant")
                continue
            due = dispatching.due_count(ctx)
            with click.progressbar(length=max(due, 1), label=f"{name}: {due} due") as bar:
                report = dispatching.run(ctx, batch=batch, progress=bar.update)
            click.echo(f"{name}: sent {report.sent}, failed {report.failed}, skipped {report.skipped}, "
                       f"dropped {report.dropped}, deferred {report.deferred}, reconciled {report.reconciled} "
                       f"(requeued {report.requeued}), planned {report.planned}")


@commands.command("scan")
@click.option("--tenant", "slug", help="only this tenant (default: every tenant with the plugin on)")
@pass_runtime
def scan_command(runtime: Runtime, slug: str | None) -> None:
    """Enrol the leads that no rep contacted within their sequences' hours."""
    from . import enrolling

    for tenant_id in _tenants(runtime, slug):
        with tenant_context(runtime, tenant_id) as ctx:
            if PLUGIN not in ctx.tenant.enabled:
                click.echo(f"{ctx.tenant.slug}: skipped, sms_nurture is off for this tenant")
                continue
            click.echo(f"{ctx.tenant.slug}: enrolled {enrolling.scan_not_contacted(ctx)}")
