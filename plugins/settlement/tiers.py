"""Rate tables: step or marginal tiers, per deal or cumulative over a period. Pure, no database.

A table is a list of tiers ``(up_to, rate)`` with increasing ``up_to`` and a
last tier without one (``None``: no ceiling). ``up_to`` is inclusive: with
``[(150000, 5 %), (None, 8 %)]`` an amount of exactly 150,000.00 is in the
first tier.

- **step**: the whole amount earns the rate of the tier the amount falls in.
- **marginal**: each slice earns its own tier's rate (income-tax style).

Cumulative plans earn on the rep's running total in the period: a deal that
takes the total from ``before`` to ``after`` earns ``f(after) − f(before)``,
each side rounded to the cent first, so the earnings of a period always add
up to ``f(period total)`` whatever the order of the deals. A step table makes
that increment include the cliff (the whole total re-rated): that is what a
step plan means; a marginal table never does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pelago.plugin import to_money

MODES = ("step", "marginal")
SCOPES = ("deal", "period")
MAX_TIERS = 50


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None
    rate: Decimal


def tiers_of(rows: Iterable[Mapping[str, Any]]) -> tuple[Tier, ...]:
    """Validated tiers from ``[{"up_to": "150000.00" | None, "rate": "0.05"}, …]`` (strings or Decimals).

    Raises ``ValueError`` naming what is wrong: no tier, a float, a rate
    outside 0–1, ceilings not increasing, a ceiling on the last tier or none
    on an earlier one.
    """
    out: list[Tier] = []
    for row in rows:
        up_to, rate = row.get("up_to"), row.get("rate")
        if isinstance(up_to, float) or isinstance(rate, float):
            raise ValueError("amounts and rates are decimal strings, not floats")
        rate = Decimal(rate)  # type: ignore[arg-type]
        if not rate.is_finite() or not Decimal(0) <= rate <= Decimal(1):
            raise ValueError("a rate is a fraction between 0 and 1 (0.05 is 5 %)")
        out.append(Tier(None if up_to is None else to_money(up_to), rate))
    if not out:
        raise ValueError("a rate table needs at least one tier")
    if len(out) > MAX_TIERS:
        raise ValueError(f"at most {MAX_TIERS} tiers")
    if out[-1].up_to is not None:
        raise ValueError("the last tier has no ceiling (up_to null)")
    ceilings = [t.up_to for t in out[:-1]]
    if any(c is None for c in ceilings):
        raise ValueError("only the last tier may have no ceiling")
    previous = Decimal(0)
    for c in ceilings:
        assert c is not None
        if c <= previous:
            raise ValueError("tier ceilings must be positive and increasing")
        previous = c
    return tuple(out)


def _step(amount: Decimal, tiers: Sequence[Tier]) -> Decimal:
    for tier in tiers:
        if tier.up_to is None or amount <= tier.up_to:
            return amount * tier.rate
    raise AssertionError("the last tier has no ceiling")  # pragma: no cover


def _marginal(amount: Decimal, tiers: Sequence[Tier]) -> Decimal:
    earned, floor = Decimal(0), Decimal(0)
    for tier in tiers:
        top = amount if tier.up_to is None else min(amount, tier.up_to)
        if top > floor:
            earned += (top - floor) * tier.rate
        if tier.up_to is None or amount <= tier.up_to:
            break
        floor = tier.up_to
    return earned


def earned(mode: str, amount: Decimal, tiers: Sequence[Tier]) -> Decimal:
    """The commission on ``amount``, half up to the cent; a negative amount earns the negative."""
    if mode not in MODES:
        raise ValueError(f"mode is one of {', '.join(MODES)}")
    sign = -1 if amount < 0 else 1
    size = abs(Decimal(amount))
    raw = _step(size, tiers) if mode == "step" else _marginal(size, tiers)
    return sign * to_money(raw)


def increment(mode: str, before: Decimal, amount: Decimal, tiers: Sequence[Tier]) -> Decimal:
    """What ``amount`` earns on top of a running total ``before`` (cumulative plans)."""
    return earned(mode, before + amount, tiers) - earned(mode, before, tiers)
