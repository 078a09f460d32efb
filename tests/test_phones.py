"""The phone shortcut agrees with the full ``phonenumbers`` parse, whatever it is given."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pelago.core.phones import BadPhone, normalise, normalise_fast

REGIONS = ["CN", "US", "GB", "DE", "HK", "SG", "JP", "FR", "IN", "BR"]


def outcome(fn, raw: str, region: str) -> str:
    try:
        return fn(raw, region)
    except BadPhone:
        return "BAD"


digits = st.text(alphabet="0123456789", min_size=1, max_size=15)
prefixes = st.sampled_from(["", "+", "+86", "+86 ", "0086", "86", "(+86) ", "+1 ", "00", "0", "1"])
separators = st.sampled_from(["", " ", "-", ".", "(", ")"])


@settings(max_examples=3000, derandomize=True, deadline=None)
@given(region=st.sampled_from(REGIONS), prefix=prefixes, body=digits, sep=separators, cut=st.integers(0, 15))
def test_the_shortcut_and_the_full_parse_agree(region: str, prefix: str, body: str, sep: str, cut: int) -> None:
    raw = prefix + body[:cut] + sep + body[cut:]
    assert outcome(normalise_fast, raw, region) == outcome(normalise, raw, region)


@pytest.mark.parametrize("raw", [
    "13812345678", "138 1234 5678", "138-1234-5678", "+86 138 1234 5678", "(+86) 13812345678",
    "008613812345678", "8613812345678", "+8613812345678", "1381234567", "23812345678", "010 6552 9988",
])
def test_common_chinese_forms(raw: str) -> None:
    assert outcome(normalise_fast, raw, "CN") == outcome(normalise, raw, "CN")


def _mobiles() -> list[tuple[str, int, str]]:
    """``(region, country code, national number)`` of an example mobile of every region that has one."""
    import phonenumbers

    out = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        if example is not None:
            out.append((region, example.country_code, str(example.national_number)))
    return out


MOBILES = _mobiles()


@settings(max_examples=3000, derandomize=True, deadline=None)
@given(
    mobile=st.sampled_from(MOBILES), tail=st.text(alphabet="0123456789", min_size=0, max_size=4),
    form=st.sampled_from(["national", "trunk", "plus", "00", "bare", "plus spaced"]), sep=separators,
    elsewhere=st.booleans(),
)
def test_the_shortcut_and_the_full_parse_agree_on_real_mobiles(
    mobile: tuple[str, int, str], tail: str, form: str, sep: str, elsewhere: bool,
) -> None:
    """Numbers shaped like each region's mobiles (the last digits changed), written as people write them."""
    region, code, national = mobile
    number = national[: len(national) - len(tail)] + tail
    raw = {
        "national": number, "trunk": "0" + number, "plus": f"+{code}{number}", "00": f"00{code}{number}",
        "bare": f"{code}{number}", "plus spaced": f"+{code} {number[:3]}{sep}{number[3:]}",
    }[form]
    as_region = "CN" if elsewhere and region != "CN" else region  # also read by a tenant of another region
    assert outcome(normalise_fast, raw, as_region) == outcome(normalise, raw, as_region)
