"""``pelago scheduling …``: generate a term's lessons from the shell, with a progress bar."""

from __future__ import annotations

import click

from pelago.plugin import Runtime, find_tenant, pass_runtime, tenant_context


@click.group("scheduling")
def commands() -> None:
    """Course scheduling (排课)."""


@commands.command("generate")
@click.option("--tenant", "slug", required=True, help="the tenant's slug")
@click.option("--rrule", required=True, help="the weekly rule, e.g. FREQ=WEEKLY;BYDAY=SA;COUNT=20")
@click.option("--start", required=True, help="first occurrence, the campus's wall-clock time YYYY-MM-DDTHH:MM")
@click.option("--duration", "duration", type=click.IntRange(5, 720), required=True, help="minutes")
@click.option("--class", "class_ids", type=int, multiple=True,
              help="classes to schedule (default: every class of the tenant that has no series yet)")
@click.option("--unknown-days", type=click.Choice(["refuse", "skip", "keep"]), default="refuse", show_default=True,
              help="days of a year the holiday calendar does not know yet")
@click.option("--batch", type=click.IntRange(1, 1000), default=50, show_default=True, help="classes per transaction")
@pass_runtime
def generate(runtime: Runtime, slug: str, rrule: str, start: str, duration: int, class_ids: tuple[int, ...],
             unknown_days: str, batch: int) -> None:
    """Generate a term: one series per class with the same rule, holidays skipped, conflicts checked."""
    from sqlalchemy import select

    from pelago.plugin import PelagoError

    from . import schedule
    from .models import Klass, Series

    tenant_id = find_tenant(runtime, slug)
    with tenant_context(runtime, tenant_id) as ctx:
        if "scheduling" not in ctx.tenant.enabled:
            raise click.ClickException(f"scheduling is off for tenant {slug}")
        ids = list(class_ids) or list(ctx.session.scalars(
            select(Klass.id).where(Klass.id.not_in(select(Series.class_id))).order_by(Klass.id)))
    data = {"rrule": rrule, "start": start, "duration_minutes": duration, "holidays": "skip",
            "makeup_workdays": "skip", "unknown_days": unknown_days, "skip_dates": []}
    made = lessons = 0
    with click.progressbar(length=len(ids), label=f"{slug}: {len(ids)} classes") as bar:
        for i in range(0, len(ids), batch):
            try:
                with tenant_context(runtime, tenant_id) as ctx:
                    m, n = schedule.generate_term(ctx, ids[i:i + batch], data, progress=bar.update)
            except PelagoError as exc:
                raise click.ClickException(f"{exc.message} {exc.errors or ''}".strip()) from None
            made, lessons = made + m, lessons + n
    click.echo(f"{slug}: {made} series, {lessons} lessons")
