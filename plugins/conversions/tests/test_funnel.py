"""The funnel report against a hand-written SQL query over generated data; medians, spend, CSV."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from pelago.plugin import NewActivity, Submission, change_stage, ingest, log_activities, record_deal, refund_deal
from pelago.plugin import tenant_context as enter

from .conv_helpers import on, phone

START = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai, the tenants' timezone
RANGE = {"start": "2026-03-02", "end": "2026-03-03"}  # [2026-03-01 16:00 UTC, 2026-03-03 16:00 UTC)

lead_st = st.fixed_dictionaries({
    "channel": st.sampled_from(["ocean", "kuai", None]),
    "campaign": st.sampled_from(["春季", "暑期", None]),
    "hours": st.integers(min_value=-20, max_value=60),
    "contact_minutes": st.none() | st.integers(min_value=1, max_value=6000),
    "qualified": st.booleans(),
    "deal_cents": st.none() | st.integers(min_value=1, max_value=10_000_000),
    "refund_share": st.integers(min_value=0, max_value=100),
    "dups": st.lists(st.tuples(st.sampled_from(["ocean", "kuai", None]), st.integers(min_value=-5, max_value=70)),
                     max_size=2),
})


def build(t: Any, clock: Any, leads: list[dict[str, Any]]) -> None:
    """The generated leads, through the core's own operations (intake, activities, stages, deals, refunds)."""
    user = t.users["manager"]
    for spec in leads:
        clock.at = START + timedelta(hours=spec["hours"])
        p = phone()
        with enter(t.runtime, t.id) as ctx:
            [out] = ingest(ctx, [Submission({"name": "x", "phone": p},
                                            {"channel": spec["channel"], "utm_campaign": spec["campaign"]})],
                           routing=False)
        lead_id = out.lead_id
        if spec["contact_minutes"] is not None:
            clock.advance(minutes=spec["contact_minutes"])
            with enter(t.runtime, t.id) as ctx:
                log_activities(ctx, [NewActivity(lead_id, "call", "called", user_id=user)])
        if spec["qualified"]:
            with enter(t.runtime, t.id) as ctx:
                change_stage(ctx, lead_id, "qualified")
        if spec["deal_cents"] is not None:
            amount = Decimal(spec["deal_cents"]) / 100
            with enter(t.runtime, t.id) as ctx:
                deal_id = record_deal(ctx, lead_id, amount=amount, kind="first_purchase")
            refund = (amount * spec["refund_share"] / 100).quantize(Decimal("0.01"))
            if refund > 0:
                with enter(t.runtime, t.id) as ctx:
                    refund_deal(ctx, deal_id, amount=refund, reason="partial")
        for dup_channel, dup_hours in spec["dups"]:
            clock.at = START + timedelta(hours=dup_hours)
            with enter(t.runtime, t.id) as ctx:
                [again] = ingest(ctx, [Submission({"name": "x", "phone": p}, {"channel": dup_channel})],
                                 routing=False)
                assert again.status == "merged"


HAND_WRITTEN = """
SELECT t.channel, t.utm_campaign,
       count(*) AS leads,
       sum(CASE WHEN EXISTS (SELECT 1 FROM core_activity a WHERE a.lead_id = t.lead_id AND a.user_id IS NOT NULL)
                THEN 1 ELSE 0 END) AS contacted,
       sum(CASE WHEN EXISTS (SELECT 1 FROM core_stage_change s WHERE s.lead_id = t.lead_id
                                AND s.new IN ('qualified', 'won')) THEN 1 ELSE 0 END) AS qualified,
       sum(CASE WHEN EXISTS (SELECT 1 FROM core_deal d WHERE d.lead_id = t.lead_id) THEN 1 ELSE 0 END) AS won,
       coalesce(sum((SELECT sum(d.amount - d.refunded) FROM core_deal d WHERE d.lead_id = t.lead_id)), 0) AS revenue
FROM core_touch t
WHERE t.tenant_id = :t AND NOT t.merged AND t.received_at >= :lo AND t.received_at < :hi
GROUP BY t.channel, t.utm_campaign
"""
DUPLICATES = """
SELECT channel, utm_campaign, count(*) FROM core_touch
WHERE tenant_id = :t AND merged AND received_at >= :lo AND received_at < :hi GROUP BY channel, utm_campaign
"""


def by_hand(t: Any, dialect: str) -> dict[tuple[Any, Any], dict[str, Any]]:
    lo, hi = datetime(2026, 3, 1, 16, tzinfo=timezone.utc), datetime(2026, 3, 3, 16, tzinfo=timezone.utc)
    args: dict[str, Any] = {"t": t.id, "lo": lo, "hi": hi}
    if dialect == "sqlite":  # times are stored as ISO text there, money as integer cents
        args.update(lo=lo.isoformat(sep=" "), hi=hi.isoformat(sep=" "))
    out: dict[tuple[Any, Any], dict[str, Any]] = {}
    with t.runtime.engine.connect() as conn:
        for ch, camp, leads, contacted, qualified, won, revenue in conn.execute(text(HAND_WRITTEN), args):
            cents = Decimal(revenue) / 100 if dialect == "sqlite" else Decimal(revenue)
            out[(ch, camp)] = {"leads": leads, "duplicates": 0, "contacted": contacted, "qualified": qualified,
                               "won": won, "revenue": str(cents.quantize(Decimal("0.01")))}
        for ch, camp, n in conn.execute(text(DUPLICATES), args):
            out.setdefault((ch, camp), {"leads": 0, "duplicates": 0, "contacted": 0, "qualified": 0, "won": 0,
                                        "revenue": "0.00"})["duplicates"] = n
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(leads=st.lists(lead_st, min_size=1, max_size=8))
def test_the_funnel_agrees_with_a_hand_written_query(app, clock, pelago_db, leads):
    t = on(app)
    build(t, clock, leads)
    r = t.get("/api/v1/conversions/funnel", query_string={**RANGE, "group_by": "channel,utm_campaign"})
    assert r.status_code == 200, r.get_json()
    doc = r.get_json()
    got = {(row["group"]["channel"], row["group"]["utm_campaign"]):
           {k: row[k] for k in ("leads", "duplicates", "contacted", "qualified", "won", "revenue")}
           for row in doc["rows"]}
    assert got == by_hand(t, pelago_db)
    assert doc["total"]["leads"] == sum(v["leads"] for v in got.values())
    assert Decimal(doc["total"]["revenue"]) == sum((Decimal(v["revenue"]) for v in got.values()), Decimal(0))


def test_median_time_to_first_contact_in_the_groups_and_in_total(app, clock):
    t = on(app)
    build(t, clock, [
        {"channel": "ocean", "campaign": None, "hours": 0, "contact_minutes": m, "qualified": False,
         "deal_cents": None, "refund_share": 0, "dups": []} for m in (10, 40, 20, 30)
    ] + [{"channel": "kuai", "campaign": None, "hours": 1, "contact_minutes": m, "qualified": False,
          "deal_cents": None, "refund_share": 0, "dups": []} for m in (5, None, 7)])
    doc = t.get("/api/v1/conversions/funnel", query_string=RANGE).get_json()
    medians = {row["group"]["channel"]: row["median_first_contact_seconds"] for row in doc["rows"]}
    assert medians == {"kuai": 300, "ocean": 1200}  # the lower middle of 10, 20, 30, 40 minutes
    assert doc["total"]["median_first_contact_seconds"] == 600  # 5, 7, 10, 20, 30, 40: the lower middle
    assert {row["group"]["channel"]: row["contacted"] for row in doc["rows"]} == {"kuai": 2, "ocean": 4}


def test_spend_gives_cost_per_lead_and_deal_and_return(app, clock):
    t = on(app)
    build(t, clock, [
        {"channel": "ocean", "campaign": "春季", "hours": 0, "contact_minutes": None, "qualified": False,
         "deal_cents": cents, "refund_share": 0, "dups": []} for cents in (480000, None, None)
    ])
    csv_text = "day,channel,campaign,amount\n2026-03-02,ocean,春季,300.00\n2026-03-03,ocean,春季,0.10\n" \
               "2026-03-02,ocean,,99.90\n2026-03-04,ocean,春季,5000\n"
    r = t.post("/api/v1/conversions/spend", data={"file": (io.BytesIO(("\ufeff" + csv_text).encode()), "s.csv")},
               content_type="multipart/form-data")
    assert r.status_code == 200 and r.get_json() == {"rows": 4, "days": 3}, r.get_json()
    doc = t.get("/api/v1/conversions/funnel", query_string=RANGE).get_json()
    [row] = doc["rows"]
    assert (row["spend"], row["cost_per_lead"], row["cost_per_deal"], row["return_on_spend"]) == (
        "400.00", "133.33", "400.00", "12.00")
    by_campaign = t.get("/api/v1/conversions/funnel",
                        query_string={**RANGE, "group_by": "channel,utm_campaign"}).get_json()["rows"]
    assert [(x["group"]["utm_campaign"], x["leads"], x["spend"]) for x in by_campaign] == [
        (None, 0, "99.90"), ("春季", 3, "300.10")]
    assert t.get("/api/v1/conversions/funnel", query_string={**RANGE, "group_by": "source"}
                 ).get_json()["rows"][0]["spend"] is None  # spend is kept by channel and campaign only
    # a corrected export replaces the amounts it names
    fix = "day,channel,campaign,amount\n2026-03-02,ocean,春季,200.00\n"
    t.post("/api/v1/conversions/spend", data={"file": (io.BytesIO(fix.encode()), "s.csv")},
           content_type="multipart/form-data")
    items = t.get("/api/v1/conversions/spend", query_string=RANGE).get_json()["items"]
    assert [(x["day"], x["campaign"], x["amount"]) for x in items] == [
        ("2026-03-02", "", "99.90"), ("2026-03-02", "春季", "200.00"), ("2026-03-03", "春季", "0.10")]


@pytest.mark.parametrize(("content", "where"), [
    (b"day,channel,campaign,amount\n2026-03-02,ocean,a,10\n2026-13-02,ocean,a,10\n", {"3": {"day"}}),
    (b"day,channel,campaign,amount\n2026-03-02,ocean,a,-1\n", {"2": {"amount"}}),
    (b"day,channel,campaign,amount\n2026-03-02,ocean,a,1.5e3x\n2026-03-02,,a,1\n", {"2": {"amount"}, "3": {"channel"}}),
    (b"day,channel,campaign,amount\n2026-03-02,ocean,a,1\n2026-03-02,ocean,a,2\n", {"3": {"day"}}),
])
def test_a_spend_csv_with_a_bad_row_is_refused_whole(app, content, where):
    t = on(app)
    r = t.post("/api/v1/conversions/spend", data={"file": (io.BytesIO(content), "s.csv")},
               content_type="multipart/form-data")
    assert r.status_code == 422, r.get_json()
    rows = r.get_json()["errors"]["json"]["rows"]
    assert {line: set(fields) for line, fields in rows.items()} == where
    assert t.get("/api/v1/conversions/spend", query_string=RANGE).get_json()["items"] == []


@pytest.mark.parametrize("content", [b"", b"day,amount\n2026-03-02,1\n", b"day,channel,amount\n"])
def test_a_spend_csv_without_the_columns_or_rows_is_refused(app, content):
    t = on(app)
    r = t.post("/api/v1/conversions/spend", data={"file": (io.BytesIO(content), "s.csv")},
               content_type="multipart/form-data")
    assert r.status_code == 422 and "file" in r.get_json()["errors"]["json"]


@pytest.mark.parametrize(("query", "field"), [
    ({"start": "2026-03-03", "end": "2026-03-02"}, "end"),
    ({**RANGE, "group_by": "channel,phone"}, "group_by"),
    ({**RANGE, "group_by": "channel,channel"}, "group_by"),
    ({"start": "yesterday", "end": "2026-03-02"}, "start"),
])
def test_bad_funnel_queries_are_422(app, query, field):
    t = on(app)
    r = t.get("/api/v1/conversions/funnel", query_string=query)
    assert r.status_code == 422 and field in r.get_json()["errors"]["query"], r.get_json()


def test_the_csv_has_a_bom_and_the_same_figures(app, clock):
    t = on(app)
    build(t, clock, [{"channel": "ocean", "campaign": None, "hours": 0, "contact_minutes": 3, "qualified": True,
                      "deal_cents": 1999, "refund_share": 0, "dups": [("ocean", 2)]}])
    r = t.get("/api/v1/conversions/funnel.csv", query_string=RANGE)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert r.data.startswith("\ufeff".encode())
    lines = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig"))))
    assert lines[0][:7] == ["channel", "leads", "duplicates", "contacted", "qualified", "won", "revenue"]
    assert lines[1][:8] == ["ocean", "1", "1", "1", "1", "1", "19.99", "180"]
    assert lines[2][:2] == ["total", "1"]


def test_conversions_reported_and_accepted_per_channel(app, clock, monkeypatch):
    from .conv_helpers import account, channel, rule, submit
    from .stand_in import StandIn

    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    platform = StandIn(answer=lambda r: (400, {"message": "no"}) if r.json["click_id"] == "R" else (200, {})).start()
    try:
        t = on(app)
        ch = channel(t)
        rule(t, account(t, platform.url)["id"], "valid_lead", "form")
        for click in ("A", "R", "B"):
            submit(t, ch, {"name": "x", "phone": phone(), "clickid": click, "id": click})
        [row] = t.get("/api/v1/conversions/funnel", query_string=RANGE).get_json()["rows"]
        assert (row["group"], row["leads"], row["conversions_reported"], row["conversions_accepted"]) == (
            {"channel": "ocean"}, 3, 3, 2)
    finally:
        platform.stop()
