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


#: ISO 4217 codes of the currencies in use (funds, precious metals and test codes left out); a
#: fixed list, so a new currency is a code change.
CURRENCIES = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP
GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD
KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK
NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS
SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES VND VUV WST
XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL
""".split())


def currency_code(value: str) -> str:
    """``value`` upper-cased if it is an ISO 4217 code in :data:`CURRENCIES`; ``ValueError`` otherwise."""
    code = value.strip().upper() if isinstance(value, str) else ""
    if code not in CURRENCIES:
        raise ValueError(f"{str(value)[:20]!r} is not an ISO 4217 currency code (e.g. CNY, USD, EUR)")
    return code
