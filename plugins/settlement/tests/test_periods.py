"""Periods: the pure arithmetic here; locking, late entries and the race with a lock in test_ledger.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pelago.plugins.settlement import periods

ZONES = ("Asia/Shanghai", "America/New_York", "America/Sao_Paulo", "Europe/London", "Pacific/Chatham", "UTC")
UTC = timezone.utc


def test_a_month_in_shanghai_is_half_open_in_utc():
    nov = periods.bounds("2026-11", ZoneInfo("Asia/Shanghai"))
    assert nov.starts_at == datetime(2026, 10, 31, 16, tzinfo=UTC)
    assert nov.ends_at == datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert nov.ends_at not in nov and nov.starts_at in nov
    assert nov.ends_at - timedelta(microseconds=1) in nov


def test_the_same_instant_is_in_different_months_in_different_branches():
    at = datetime(2026, 11, 30, 17, tzinfo=UTC)  # 01:00 on 1 December in Shanghai, still November in New York
    assert periods.period_of(at, ZoneInfo("Asia/Shanghai")).key == "2026-12"
    assert periods.period_of(at, ZoneInfo("America/New_York")).key == "2026-11"


def test_a_month_across_a_dst_change_is_not_24_hours_times_days():
    march = periods.bounds("2026-03", ZoneInfo("America/New_York"))
    assert march.ends_at - march.starts_at == timedelta(days=31, hours=-1)


def test_quarters_and_keys():
    tz = ZoneInfo("Asia/Shanghai")
    assert periods.period_of(datetime(2026, 5, 20, tzinfo=UTC), tz, 3).key == "2026-04"
    assert periods.next_key("2026-10", 3) == "2027-01"
    assert periods.next_key("2026-12") == "2027-01"
    for bad in ("2026-13", "2026-1", "26-11", "2026-11-01", "", "２０２６-11"):
        with pytest.raises(ValueError):
            periods.parse_key(bad)
    with pytest.raises(ValueError):
        periods.parse_key("2026-05", 3)  # quarters start in 1, 4, 7, 10
    with pytest.raises(ValueError):
        periods.bounds("2026-01", tz, 5)
    with pytest.raises(ValueError):
        periods.period_of(datetime(2026, 1, 1), tz)


instants = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(at=instants, zone=st.sampled_from(ZONES), months=st.sampled_from(periods.PERIOD_MONTHS))
def test_every_instant_is_in_exactly_one_period_and_periods_tile_time(at, zone, months):
    tz = ZoneInfo(zone)
    p = periods.period_of(at, tz, months)
    assert at in p and p.starts_at < p.ends_at
    after = periods.bounds(periods.next_key(p.key, months), tz, months)
    assert after.starts_at == p.ends_at and at not in after
    before = periods.previous(p, tz, months)
    assert before.ends_at == p.starts_at and at not in before
    local = p.starts_at.astimezone(tz)
    assert local.day == 1 and (local.month - 1) % months == 0


# --- the period setting, end to end ------------------------------------------------------------

from .money_helpers import S, branch, entries, on, owned, period, won  # noqa: E402


def test_quarterly_periods_and_a_bad_setting(app):
    t = on(app, period_months=3)
    b = branch(t, team_id=t.team_id)
    deal = won(t, owned(t, "13800142001")["id"], "10.00")  # 2 March: the first quarter
    q1 = period(t, b, "2026-01")
    assert q1 is not None and [e.period_id for e in entries(t, deal_id=deal["id"])] == [q1.id]
    assert (q1.ends_at - q1.starts_at).days == 90
    for bad in ({"period_months": 5}, {"period_months": "1"}, {"referral_sources": "referral"}):
        r = t.put("/api/v1/plugins/settlement", json={"enabled": True, "settings": bad})
        assert r.status_code == 422, (bad, r.get_json())
    assert t.get(f"{S}/periods", query_string={"key": "2026-01"}).get_json()["items"][0]["id"] == q1.id
