"""Phone numbers as E.164, so duplicates are found whatever the formatting."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

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


@dataclass(frozen=True)
class _Shortcut:
    """What the shortcut needs of one region's metadata, compiled once."""

    code: str  # the calling code, "86"
    mobile: re.Pattern[str]
    mobile_lengths: frozenset[int]
    general: re.Pattern[str]
    general_lengths: frozenset[int]
    local_lengths: frozenset[int]  # lengths only dialable locally
    idd: re.Pattern[str] | None  # the international dialling prefix ("00" in CN)
    trunk: re.Pattern[str] | None  # national prefix (and carrier codes) for parsing
    transforms: bool  # the trunk pattern can rewrite digits (AR, BR, JP …)
    valid: re.Pattern[str]  # mobile and general patterns in one: fully matches both
    lengths: frozenset[int]  # the lengths both allow

    def national(self, digits: str) -> str | None:
        """The national significant number of ``digits`` if ``phonenumbers`` would surely
        accept it as a mobile number of this region; ``None`` when unsure.

        Follows ``phonenumbers.parse``: a ``+`` or the international prefix
        followed by our calling code; else our calling code without a plus when
        the digits only make sense without it; else a national number. In every
        case the rest must be a mobile number that no trunk prefix rule would
        touch.
        """
        if digits.startswith("+"):
            rest = digits[1:]
            if not (rest.startswith(self.code) and rest.isdigit()):
                return None
            return self._mobile(rest[len(self.code):])
        if not digits.isdigit():
            return None
        match = self.idd.match(digits) if self.idd is not None else None
        if match is not None and not digits[match.end():].startswith("0"):
            rest = digits[match.end():]  # dialled from abroad; phonenumbers reads it so
            return self._mobile(rest[len(self.code):]) if rest.startswith(self.code) else None
        if digits.startswith(self.code):
            # phonenumbers takes the code off when the digits only make sense without it
            # ("8613812345678"), or are too long with it.
            rest = digits[len(self.code):]
            if self._trunk(rest):
                return None  # not our call
            too_long = len(digits) > max(self.general_lengths) and len(digits) not in self.local_lengths
            if too_long or (not self.general.fullmatch(digits) and self.general.fullmatch(rest)):
                return self._mobile(rest)
        return self._mobile(digits)

    def _trunk(self, national: str) -> bool:
        """Could phonenumbers read a trunk prefix or carrier code off ``national``?"""
        if self.trunk is None:
            return False
        match = self.trunk.match(national)
        return match is not None and (match.end() > 0 or self.transforms)

    def _mobile(self, national: str) -> str | None:
        if not national or national.startswith("0") or not national.isascii():
            return None
        if len(national) not in self.lengths or not self.valid.fullmatch(national):
            return None  # both patterns at once: mobile, and the general description
        if self._trunk(national):
            return None  # a trunk prefix or carrier code could be read off: not our call
        return national


@functools.lru_cache(maxsize=64)
def _shortcut(region: str) -> _Shortcut | None:
    """The region's shortcut, or ``None`` where its metadata does not allow one."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if meta is None or meta.mobile is None or meta.mobile.national_number_pattern is None:
        return None
    general = meta.general_desc
    if general is None or general.national_number_pattern is None or not general.possible_length:
        return None
    if -1 in general.possible_length:  # "no valid length": phonenumbers refuses all
        return None
    if meta.country_code is None:
        return None
    code = str(meta.country_code)
    # Only a region that is its calling code's main region, and a code no shorter code prefixes
    # (phonenumbers reads the shortest known code first).
    if phonenumbers.region_code_for_country_code(meta.country_code) != region:
        return None
    if any(int(code[:k]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE for k in range(1, len(code))):
        return None
    return _Shortcut(
        code=code,
        mobile=re.compile(meta.mobile.national_number_pattern),
        mobile_lengths=frozenset(meta.mobile.possible_length or general.possible_length),
        general=re.compile(general.national_number_pattern),
        general_lengths=frozenset(general.possible_length),
        local_lengths=frozenset(general.possible_length_local_only or ()),
        idd=re.compile(meta.international_prefix) if meta.international_prefix else None,
        trunk=re.compile(meta.national_prefix_for_parsing) if meta.national_prefix_for_parsing else None,
        transforms=bool(meta.national_prefix_transform_rule),
        valid=re.compile(rf"(?=(?:{general.national_number_pattern})\Z)(?:{meta.mobile.national_number_pattern})\Z"),
        lengths=frozenset(meta.mobile.possible_length or general.possible_length) & frozenset(general.possible_length),
    )


def normalise_fast(raw: str, region: str = "CN") -> str:
    """:func:`normalise`, with a shortcut for the common ways of writing a mobile number.

    Spaces, dashes, dots and brackets aside, a number written nationally
    (``138 1234 5678``), with a plus and the calling code (``+86 138…``),
    with the international prefix (``0086 138…``) or with the bare calling
    code (``86138…``) is read the way ``phonenumbers.parse`` reads it, and if
    what remains fully matches the region's mobile pattern (and its general
    pattern and lengths, which ``is_valid_number`` checks), its E.164 form is
    the calling code plus those digits. Anything less certain takes the full
    parse. Imports use this: parsing is most of the cost of normalising.
    """
    digits = _PUNCTUATION.sub("", raw or "")
    shortcut = _shortcut(region)
    if shortcut is not None and digits.isascii():
        national = shortcut.national(digits)
        if national is not None:
            return f"+{shortcut.code}{national}"
    return normalise(raw, region)
