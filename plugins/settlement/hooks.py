"""The settlement plugin's hook implementations.

Division (this section): ``choose_team`` divides new leads between branches
by the tenant's distribution policies (:mod:`.division`), and ``lead_created``
links each allocation to the lead it made.

Money (its own section below): ``deal_won`` and ``deal_refunded`` feed the ledger.
"""

from __future__ import annotations

# --- Money: deal_won and deal_refunded feed the ledger (:mod:`.ledger`) ------------------------
#
# Delivery is at least once: each deal and each refund is settled at most
# once, decided by a unique row written first (``settlement_deal``,
# ``settlement_refund``), so a redelivered event writes nothing.
from pelago.plugin import Event, HookContext, hookimpl


@hookimpl
def deal_won(ctx: HookContext, event: Event) -> None:
    from .ledger import settle_won

    for item in sorted(event.items, key=lambda i: i["deal_id"]):
        settle_won(ctx, item["deal_id"])


@hookimpl
def deal_refunded(ctx: HookContext, event: Event) -> None:
    from .ledger import settle_refund

    for item in sorted(event.items, key=lambda i: i["refund_id"]):
        settle_refund(ctx, item["refund_id"])
