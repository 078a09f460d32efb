"""Money: ``Decimal`` to the cent, ROUND_HALF_UP as Chinese finance expects.

Python's own ``round`` is banker's rounding (half to even); never use it on money.
"""

from __future__ import annotations

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
