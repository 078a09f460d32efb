"""Splitting money into shares that add up exactly, and clawing it back in proportion.

Pure functions, no database. Every split is :func:`pelago.plugin.split_money`
(largest remainder, ROUND_HALF_UP cents) over keys in ascending order, so the
tie-break is fixed: on equal remainders the smaller key (branch id, then user
id) gets the cent. Whatever the weights, the parts add up to the whole.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from pelago.plugin import split_money, to_money

K = TypeVar("K", bound=Hashable)
ZERO = Decimal("0.00")


def _order(key: Any) -> Any:
    # ids ascending; a missing id (None) counts as 0, so keys like (branch_id, None) sort too
    if isinstance(key, tuple):
        return tuple(0 if part is None else part for part in key)
    return 0 if key is None else key


def split_by_key(total: Decimal, weights: Mapping[K, Decimal]) -> dict[K, Decimal]:
    """``total`` split in proportion to ``weights``, keyed; ties go to the smaller key (None as 0)."""
    keys = sorted(weights, key=_order)  # type: ignore[arg-type]
    parts = split_money(total, [weights[k] for k in keys])
    return dict(zip(keys, parts, strict=True))


@dataclass(frozen=True)
class Share:
    """One person's share of a deal: ``weight`` is a percentage (any positive number works)."""

    branch_id: int
    user_id: int | None
    weight: Decimal


def split_two_levels(total: Decimal, shares: Iterable[Share]) -> dict[tuple[int, int | None], Decimal]:
    """``total`` split first between branches, then inside each branch between its people.

    A branch gets the sum of its people's weights; inside the branch its amount
    is split again by their weights. Both levels are largest-remainder splits
    with the smaller id first on a tie (a person without a user id sorts
    first, as 0), so the branch totals and the grand total are exact. The
    same person named twice (two roles) gets one line with the weights added.
    """
    people: dict[int, dict[int, Decimal]] = {}
    for share in shares:
        if share.weight <= 0:
            continue
        inside = people.setdefault(share.branch_id, {})
        user = share.user_id or 0
        inside[user] = inside.get(user, Decimal(0)) + Decimal(share.weight)
    if not people:
        raise ValueError("no share has a positive weight")
    branches = split_by_key(total, {b: sum(w.values(), Decimal(0)) for b, w in people.items()})
    out: dict[tuple[int, int | None], Decimal] = {}
    for branch_id, amount in branches.items():
        for user, part in split_by_key(amount, people[branch_id]).items():
            out[(branch_id, user or None)] = part
    return out


def clawed_to_date(lines: Mapping[K, Decimal], refunded: Decimal) -> dict[K, Decimal]:
    """How much of each credit line a refunded total takes back, split in proportion to the lines.

    For an override, which books its new lines net of the refunds so far in
    one step. (Successive refunds use :func:`clawback` on the balances.) At
    the full amount every line is taken back exactly: the lines add up to the
    deal, so its exact shares are whole cents.
    """
    refunded = to_money(refunded)
    if refunded == 0:
        return {k: ZERO for k in lines}
    weights = {k: abs(v) for k, v in lines.items()}
    if not any(weights.values()):
        return {k: ZERO for k in lines}
    return split_by_key(refunded, weights)


def clawback(balances: Mapping[K, Decimal], refund: Decimal) -> dict[K, Decimal]:
    """The (negative) entries of a refund: ``refund`` split over what is left of each credit line.

    ``balances`` are the lines' credits net of earlier clawbacks. Splitting by
    them (largest remainder) keeps every part between 0 and the line's
    balance, so a clawback is never positive and never takes a line below
    zero (a split of the cumulative refunded total would: largest remainder
    is not monotone); the parts add up to the refund exactly, and the refund
    that empties the deal takes each line back to exactly 0.00. Each part is
    the line's proportional share of the refund to within a cent.
    """
    refund = to_money(refund)
    weights = {k: max(v, ZERO) for k, v in balances.items()}
    if refund <= 0 or not any(weights.values()):
        return {k: ZERO for k in balances}
    if refund > sum(weights.values()):
        raise ValueError("a refund cannot take back more than is left")
    return {k: -v for k, v in split_by_key(refund, weights).items()}


def proportional_to_date(amount: Decimal, refunded: Decimal, deal_amount: Decimal) -> Decimal:
    """``amount × refunded ÷ deal_amount``, half up to the cent: a commission's share of the refunds so far."""
    if deal_amount <= 0:
        raise ValueError("the deal amount must be positive")
    return to_money(Decimal(amount) * Decimal(refunded) / Decimal(deal_amount))


def proportional_clawback(amount: Decimal, before: Decimal, after: Decimal, deal_amount: Decimal) -> Decimal:
    """The (negative) part of ``amount`` a refund takes back: telescopes to ``-amount`` at a full refund."""
    return proportional_to_date(amount, before, deal_amount) - proportional_to_date(amount, after, deal_amount)
