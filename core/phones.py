"""Phone numbers as E.164, so duplicates are found whatever the formatting."""

from __future__ import annotations

import phonenumbers


class BadPhone(ValueError):
    pass


def normalise(raw: str, region: str = "CN") -> str:
    """``raw`` in E.164 (``+8613812345678``), read with ``region`` as default.

    Raises :class:`BadPhone` when it is not a possible number. Validity is
    checked with ``is_valid_number`` so that typos (a digit short) are refused
    rather than stored as a different person.
    """
    text = (raw or "").strip()
    if not text:
        raise BadPhone("empty phone number")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise BadPhone(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise BadPhone(f"not a valid phone number for region {region}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
