"""The settlement plugin's hook implementations.

Division (this section): ``choose_team`` divides new leads between branches
by the tenant's distribution policies (:mod:`.division`), once per batch,
writing each allocation with the lead's id (``LeadInfo.new_id``: the intake
line reserves it before routing), so no second pass links them.

Money (its own section below): ``deal_won`` and ``deal_refunded`` feed the ledger
(:mod:`.ledger`).
"""

from __future__ import annotations

from collections.abc import Sequence

from pelago.plugin import Event, HookContext, LeadInfo, TeamChoice, hookimpl

from . import division
from .ledger import settle_refund, settle_won

# --- division ----------------------------------------------------------------------


@hookimpl
def choose_team(ctx: HookContext, leads: Sequence[LeadInfo]) -> Sequence[TeamChoice | None] | None:
    """Leads a distribution policy covers go to a branch's intake team; others: no opinion."""
    if not ctx.settings(division.PLUGIN)["division"]:
        return None
    return division.divide(ctx, leads)


# --- Money: deal_won and deal_refunded feed the ledger (:mod:`.ledger`) ------------------------
#
# Delivery is at least once: each deal and each refund is settled at most
# once, decided by a unique row written first (``settlement_deal``,
# ``settlement_refund``), so a redelivered event writes nothing.


@hookimpl
def deal_won(ctx: HookContext, event: Event) -> None:
    for item in sorted(event.items, key=lambda i: i["deal_id"]):
        settle_won(ctx, item["deal_id"])


@hookimpl
def deal_refunded(ctx: HookContext, event: Event) -> None:
    for item in sorted(event.items, key=lambda i: i["refund_id"]):
        settle_refund(ctx, item["refund_id"])
