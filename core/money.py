"""Money: ``Decimal`` to the cent, ROUND_HALF_UP as Chinese finance expects.

Python's own ``round`` is banker's rounding (half to even); never use it on money.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
#: The largest amount a NUMERIC(18, 2) column holds.
MAX_AMOUNT = Decimal("9999999999999999.99")


def to_money(value: Decimal | str | int) -> Decimal:
    """``value`` rounded half-up to 2 places; raises ``ValueError`` if not a finite number."""
    if isinstance(value, float):
        raise ValueError("money must not be a float; send a string")
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError):
        raise ValueError(f"not an amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    if abs(amount) > MAX_AMOUNT:
        raise ValueError(f"amount out of range (at most {MAX_AMOUNT})")
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def split_money(total: Decimal | str | int, weights: Sequence[Decimal | int | str]) -> list[Decimal]:
    """``total`` split in proportion to ``weights``, to the cent, parts adding up to ``total`` exactly.

    Each part is rounded down to the cent first (toward zero for a negative
    total), then the cents left over go one each to the parts with the
    largest remainders (earlier parts first on a tie): the largest-remainder
    method, so no cent is lost or invented, whatever the weights.
    """
    amount = to_money(total)
    shares = [Decimal(w) for w in weights]
    if not shares:
        raise ValueError("split_money needs at least one weight")
    if any(w < 0 for w in shares):
        raise ValueError("weights must not be negative")
    whole = sum(shares)
    if whole == 0:
        raise ValueError("weights must not all be zero")
    sign = -1 if amount < 0 else 1
    cents = int(abs(amount) / CENT)
    exact = [Decimal(cents) * w / whole for w in shares]
    parts = [int(e) for e in exact]  # floor: every exact share is >= 0
    left = cents - sum(parts)
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[:left]:
        parts[i] += 1
    return [sign * Decimal(p) * CENT for p in parts]
