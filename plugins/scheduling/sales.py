"""Selling class-hour packages: a core deal opens a student account, whoever records the deal.

A deal whose ``product`` names a package (``package:<id> …`` as this
plugin's purchase route writes it, or exactly the package's name) opens one
account: the plugin's own route opens it in its transaction, and the
``deal_won`` event that follows finds it there (one account per deal, a
unique index), so a deal recorded by a person in the CRM and one recorded
here end the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from pelago.plugin import HookContext, record_deal

from . import ledger, policy, schedule
from .models import Package

PRODUCT = re.compile(r"^package:([0-9]{1,18})\b")


def product_of(package: Package) -> str:
    return f"package:{package.id} {package.name}"


def sell(ctx: HookContext, lead_id: int, package_id: int) -> tuple[int, int]:
    """Record a core deal for the package and open its account; returns (deal id, account id)."""
    package = schedule.get(ctx, Package, package_id, "package", field="package_id")
    policy.check_sale(ctx, package.hours, package.gift_hours, package.validity_days)
    ledger.ensure_student(ctx, lead_id)
    deal_id = record_deal(ctx, lead_id, amount=package.price, product=product_of(package))
    account_id = ledger.open_account(ctx, lead_id, package, paid=package.price, deal_id=deal_id)
    assert account_id is not None
    return deal_id, account_id


def open_for_deals(ctx: HookContext, items: Iterable[Mapping[str, Any]]) -> int:
    """``deal_won``: an account for each deal naming a package (idempotent: one per deal)."""
    wanted = []
    names: set[str] = set()
    for item in items:
        product = str(item.get("product") or "")
        m = PRODUCT.match(product)
        wanted.append((item, int(m.group(1)) if m else None, product))
        if not m and product:
            names.add(product)
    if not wanted:
        return 0
    by_id = {p.id: p for p in ctx.session.scalars(
        select(Package).where(Package.id.in_([i for _, i, _ in wanted if i is not None]))
    )}
    by_name = {p.name: p for p in ctx.session.scalars(select(Package).where(Package.name.in_(names)))} if names else {}
    opened = 0
    for item, pid, product in wanted:
        package = by_id.get(pid) if pid is not None else by_name.get(product)
        if package is None:
            continue
        at = None
        if item.get("won_at"):
            from datetime import datetime

            at = datetime.fromisoformat(str(item["won_at"]))
        if ledger.open_account(ctx, int(item["lead_id"]), package, paid=Decimal(str(item["amount"])),
                               deal_id=int(item["deal_id"]), at=at) is not None:
            opened += 1
    return opened
