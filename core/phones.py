"""Phone numbers as E.164, so duplicates are found whatever the formatting."""

from __future__ import annotations

import functools
import re

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


_PUNCTUATION = re.compile(r"[\s\-().]")


@functools.lru_cache(maxsize=64)
def _fast_patterns(region: str) -> tuple[str, re.Pattern[str]] | None:
    """The region's calling code and its mobile pattern, compiled once."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if meta is None or meta.mobile is None or meta.mobile.national_number_pattern is None:
        return None
    return f"+{meta.country_code}", re.compile(meta.mobile.national_number_pattern)


def normalise_fast(raw: str, region: str = "CN") -> str:
    """:func:`normalise`, with a shortcut for the common case of a bare national number.

    A string of digits (spaces, dashes, dots and brackets aside) that fully
    matches the region's mobile pattern, not starting with a trunk ``0``, is a
    valid national significant number by the same metadata ``phonenumbers``
    validates against, so its E.164 form is the calling code plus the digits.
    Everything else takes the full parse. tests/test_phones.py checks the two
    agree. Imports use this: parsing is most of the cost of normalising.
    """
    digits = _PUNCTUATION.sub("", raw or "")
    if digits.isascii() and digits.isdigit() and not digits.startswith("0"):
        patterns = _fast_patterns(region)
        if patterns is not None:
            prefix, mobile = patterns
            if mobile.fullmatch(digits):
                return prefix + digits
    return normalise(raw, region)
