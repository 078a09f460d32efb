"""``pelago settlement …``: the plugin's commands.

``lock`` closes a period of every branch of a tenant (or of one branch):
true-ups, reconciliation to the cent, totals and checksum (:mod:`.closing`),
each branch in its own transaction, with progress and the differences that
refuse a lock.
"""

from __future__ import annotations

import click

from pelago.plugin import Conflict, PelagoError, Runtime, find_tenant, pass_runtime, tenant_context

PLUGIN = "settlement"


@click.group("settlement")
def commands() -> None:
    """Branches and settlement."""


@commands.command("lock")
@click.option("--tenant", "slug", required=True, help="the tenant's slug")
@click.option("--period", "key", required=True, help="the period, YYYY-MM (e.g. 2026-11)")
@click.option("--branch", "branch_id", type=click.IntRange(1, 2**63 - 1), help="only this branch (default: every branch)")
@pass_runtime
def lock_command(runtime: Runtime, slug: str, key: str, branch_id: int | None) -> None:
    """Lock a period: it never changes afterwards; entries that arrive later land in the next period."""
    from sqlalchemy import select

    from . import closing
    from .models import Branch, Period
    from .periods import parse_key

    if PLUGIN not in runtime.host.specs:
        raise click.ClickException("the settlement plugin is not deployed (PELAGO_PLUGINS)")
    try:
        parse_key(key)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--period") from None
    try:
        tenant_id = find_tenant(runtime, slug)
    except PelagoError as exc:
        raise click.ClickException(str(exc)) from None
    with tenant_context(runtime, tenant_id) as ctx:
        if PLUGIN not in ctx.tenant.enabled:
            raise click.ClickException(f"{slug}: the settlement plugin is off for this tenant")
        stmt = select(Period.id, Period.branch_id, Branch.name).join(Branch, Branch.id == Period.branch_id)
        stmt = stmt.where(Period.key == key)
        if branch_id is not None:
            stmt = stmt.where(Period.branch_id == branch_id)
        targets = ctx.session.execute(stmt.order_by(Period.branch_id)).all()
    if not targets:
        where = f" of branch {branch_id}" if branch_id is not None else ""
        raise click.ClickException(f"{slug}: no period {key}{where}")
    failed = 0
    with click.progressbar(targets, label=f"{slug}: locking {key} in {len(targets)} branch(es)",
                           item_show_func=lambda t: t and t[2]) as bar:
        for period_id, branch, name in bar:
            with tenant_context(runtime, tenant_id) as ctx:
                try:
                    period = closing.lock(ctx, closing.get_period(ctx, period_id), None)
                    ctx.session.commit()
                    sums, check = period.totals or {}, period.checksum or ""
                    result = f"locked; credited {sums['branch']['credited']}, " \
                             f"commission {sums['branch']['commission']}, " \
                             f"{sums['entries']} entries, checksum {check[:12]}"
                except Conflict as exc:
                    ctx.session.rollback()
                    failed += 1
                    result = f"refused: {exc.message}"
                    for d in (exc.errors or {}).get("differences", []):
                        result += f"\n    {d['what']} {d['id']}: credited {d['credited']}, expected {d['expected']}" \
                                  f" (difference {d['difference']}){' — ' + d['note'] if d.get('note') else ''}"
            click.echo(f"\n{name} (branch {branch}): {result}")
    if failed:
        raise click.ClickException(f"{failed} of {len(targets)} period(s) not locked")


@commands.command("settle")
@click.option("--tenant", "slug", required=True, help="the tenant's slug")
@click.option("--batch", type=click.IntRange(1, 10_000), default=500, show_default=True,
              help="deals and refunds per transaction")
@pass_runtime
def settle_command(runtime: Runtime, slug: str, batch: int) -> None:
    """Settle the won deals and refunds the ledger has not seen (won while the plugin was off, or a
    delivery that failed for good), oldest first; those of a locked period land in the next open one."""
    from sqlalchemy import func, select

    from pelago.plugin import Deal, Refund

    from . import ledger
    from .models import Refunded, SettledDeal

    if PLUGIN not in runtime.host.specs:
        raise click.ClickException("the settlement plugin is not deployed (PELAGO_PLUGINS)")
    try:
        tenant_id = find_tenant(runtime, slug)
    except PelagoError as exc:
        raise click.ClickException(str(exc)) from None
    unsettled = select(Deal.id).where(~select(SettledDeal.id).where(SettledDeal.deal_id == Deal.id).exists())
    unclawed = select(Refund.id).where(~select(Refunded.id).where(Refunded.refund_id == Refund.id).exists())
    with tenant_context(runtime, tenant_id) as ctx:
        if PLUGIN not in ctx.tenant.enabled:
            raise click.ClickException(f"{slug}: the settlement plugin is off for this tenant")
        deals = ctx.session.scalar(select(func.count()).select_from(unsettled.subquery())) or 0
        refunds = ctx.session.scalar(select(func.count()).select_from(unclawed.subquery())) or 0
    done = {"deals": 0, "refunds": 0}
    with click.progressbar(length=deals + refunds, label=f"{slug}: settling {deals} deal(s), {refunds} refund(s)") as bar:
        for what, query, settle in (("deals", unsettled, ledger.settle_won), ("refunds", unclawed, ledger.settle_refund)):
            after = 0
            while True:
                with tenant_context(runtime, tenant_id) as ctx:
                    column = query.selected_columns[0]
                    ids = list(ctx.session.scalars(query.where(column > after).order_by(column).limit(batch)))
                    for one in ids:
                        settle(ctx, one)
                    ctx.session.commit()
                if not ids:
                    break
                after = ids[-1]
                done[what] += len(ids)
                bar.update(len(ids))
    click.echo(f"{slug}: settled {done['deals']} deal(s) and {done['refunds']} refund(s)")
