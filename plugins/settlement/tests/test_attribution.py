"""Attribution: splitting exactly (pure) here; rules, situations and overrides through the API below."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pelago.plugins.settlement import shares
from pelago.plugins.settlement.shares import Share

D = Decimal


def test_one_cent_three_ways_goes_to_the_smallest_id():
    assert shares.split_by_key(D("0.01"), {7: D(1), 3: D(1), 5: D(1)}) == {3: D("0.01"), 5: D("0.00"), 7: D("0.00")}
    assert shares.split_by_key(D("100.00"), {2: D(1), 1: D(1), 3: D(1)}) == {1: D("33.34"), 2: D("33.33"), 3: D("33.33")}


def test_a_sale_split_between_two_branches_and_inside_each():
    lines = shares.split_two_levels(
        D("999.99"),
        [Share(10, 1, D(25)), Share(10, 2, D(25)), Share(20, 3, D(50))],
    )
    # branches first: 10 and 20 each 50 % of 999.99 → 500.00 (smaller branch id first) and 499.99
    assert lines == {(10, 1): D("250.00"), (10, 2): D("250.00"), (20, 3): D("499.99")}


def test_the_same_rep_in_two_roles_is_one_line():
    assert shares.split_two_levels(D("10.00"), [Share(1, 5, D(50)), Share(1, 5, D(50))]) == {(1, 5): D("10.00")}
    with pytest.raises(ValueError):
        shares.split_two_levels(D("10.00"), [Share(1, 5, D(0))])


amounts = st.integers(min_value=1, max_value=10**11).map(lambda c: Decimal(c) / 100)
weights = st.decimals(min_value=0, max_value=1000, places=2)
share_lists = st.lists(
    st.builds(Share, st.integers(1, 4), st.one_of(st.none(), st.integers(1, 6)), weights), min_size=1, max_size=8
).filter(lambda xs: any(s.weight > 0 for s in xs))


@settings(max_examples=300, deadline=None)
@given(total=amounts, people=share_lists)
def test_random_amounts_and_weights_split_exactly_to_the_total(total, people):
    lines = shares.split_two_levels(total, people)
    assert sum(lines.values()) == total
    assert all(v >= 0 and v == v.quantize(D("0.01")) for v in lines.values())
    # each branch's part is its exact share, give or take a cent
    mass = sum(s.weight for s in people)
    for one in {s.branch_id for s in people if s.weight > 0}:
        exact = total * sum(s.weight for s in people if s.branch_id == one) / mass
        got = sum(v for (b, _), v in lines.items() if b == one)
        assert abs(got - exact) < D("0.01")


@settings(max_examples=300, deadline=None)
@given(total=amounts, people=share_lists, data=st.data())
def test_partial_refunds_claw_back_proportionally_and_a_full_refund_nets_zero(total, people, data):
    lines = shares.split_two_levels(total, people)
    cuts = sorted(data.draw(st.lists(st.integers(0, int(total * 100)), max_size=5)))
    steps = [D(c) / 100 for c in cuts] + [total]
    refunded, net = D("0.00"), dict(lines)
    for n, after in enumerate(steps, start=1):
        back = shares.clawback(net, after - refunded)
        assert sum(back.values()) == refunded - after  # each refund is taken back exactly
        for k, v in back.items():
            assert v <= 0 and net[k] + v >= 0  # never positive, never below zero
            net[k] += v
            # proportional: what the line has lost so far is its exact share of the refunds, within a cent a refund
            assert abs((lines[k] - net[k]) - after * lines[k] / total) < D("0.01") * n
        refunded = after
    assert all(v == 0 for v in net.values())


@settings(max_examples=300, deadline=None)
@given(commission=amounts, total=amounts, data=st.data())
def test_a_commission_clawed_back_in_steps_nets_zero(commission, total, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, int(total * 100)), max_size=5)))
    refunded, net = D("0.00"), commission
    for after in [D(c) / 100 for c in cuts] + [total]:
        net += shares.proportional_clawback(commission, refunded, after, total)
        refunded = after
    assert net == 0


# --- rules, situations and overrides, through the API and the ledger ------------------------------

from pelago.plugins.settlement.models import CreditSet, Entry, Rule  # noqa: E402

from .money_helpers import (  # noqa: E402
    S,
    branch,
    count,
    entries,
    give,
    move_user,
    on,
    owned,
    refund,
    team,
    total,
    won,
)

JAN = "2026-01-01T00:00:00+08:00"


def rule(t, situation, method, splits=(), effective_from=JAN, who="admin"):
    return t.post(f"{S}/rules", who=who, json={"situation": situation, "method": method, "splits": list(splits),
                                                "effective_from": effective_from})


def half(a, b):
    return [{"role": a, "percent": "50"}, {"role": b, "percent": "50"}]


def test_rules_are_versioned_and_never_overlap(app):
    t = on(app)
    v1 = rule(t, "first_purchase", "first_owner")
    assert v1.status_code == 201 and v1.get_json()["version"] == 1 and v1.get_json()["effective_to"] is None
    v2 = rule(t, "first_purchase", "split", half("inviter", "closer"), effective_from="2026-02-01T00:00:00+08:00")
    assert v2.status_code == 201 and v2.get_json()["version"] == 2
    items = t.get(f"{S}/rules", query_string={"situation": "first_purchase"}).get_json()["items"]
    assert [(r["version"], r["effective_to"]) for r in items] == [(2, None), (1, v2.get_json()["effective_from"])]
    before = count(t, Rule)
    for bad, field in (
        (dict(effective_from="2026-01-15T00:00:00+08:00"), "effective_from"),  # overlaps version 2
        (dict(splits=[{"role": "closer", "percent": "60"}, {"role": "inviter", "percent": "30"}]), "splits"),
        (dict(splits=[{"role": "closer", "percent": 50}, {"role": "inviter", "percent": "50"}]), "splits"),
        (dict(splits=[{"role": "closer", "percent": "50.00001"}, {"role": "inviter", "percent": "49.99999"}]), "splits"),
        (dict(splits=[{"role": "closer", "percent": "50"}, {"role": "closer", "percent": "50"}]), "splits"),
        (dict(splits=[{"role": "boss", "percent": "100"}]), "splits"),
        (dict(method="owner_at_win"), "splits"),
        (dict(effective_from="2026-03-01T00:00:00"), "effective_from"),  # naive
    ):
        body = {"situation": "first_purchase", "method": "split", "splits": half("closer", "inviter"),
                "effective_from": "2026-03-01T00:00:00+08:00", **bad}
        r = t.post(f"{S}/rules", json=body)
        assert r.status_code == 422, (bad, r.get_json())
        errors = r.get_json()["errors"]
        assert field in errors.get("json", errors), (bad, errors)
    assert count(t, Rule) == before
    assert rule(t, "referral", "first_owner", who="manager").status_code == 403
    assert t.get(f"{S}/rules", who="rep").status_code == 403


def test_first_owner_and_the_ledger_inputs_it_used(app):
    t = on(app)
    b = branch(t, team_id=t.team_id)
    assert rule(t, "first_purchase", "first_owner").status_code == 201
    lead = owned(t, "13800139001", "rep")
    give(t, lead["id"], t.users["rep2"])
    deal = won(t, lead["id"], "300.00")
    assert {e.user_id: e.amount for e in entries(t, deal_id=deal["id"], kind="credit")} == {t.users["rep"]: D("300.00")}
    credits = t.get(f"{S}/deals/{deal['id']}/credits", who="manager").get_json()
    v1 = credits["versions"][0]
    assert v1["situation"] == "first_purchase" and v1["method"] == "first_owner" and v1["rule_version"] == 1
    assert v1["inputs"]["roles"]["first_owner"]["user_id"] == t.users["rep"]
    assert v1["inputs"]["roles"]["first_owner"]["from"].startswith("ledger #")
    assert v1["inputs"]["roles"]["closer"] == {"user_id": t.users["rep2"], "team_id": t.team_id, "branch_id": b,
                                                "from": "deal"}
    assert [(x["user_id"], x["amount"], x["roles"]) for x in v1["lines"]] == [(t.users["rep"], "300.00", ["first_owner"])]


def test_situations_repurchase_referral_and_a_cross_branch_walk_in(app):
    t = on(app)
    shanghai = branch(t, "Shanghai", team_id=t.team_id)
    wuhan_team = team(t, "Wuhan sales")
    wuhan = branch(t, "Wuhan", team_id=wuhan_team)
    move_user(t, t.users["rep2"], wuhan_team)
    assert rule(t, "repurchase", "first_owner").status_code == 201
    assert rule(t, "referral", "split", [{"role": "inviter", "percent": "20"}, {"role": "closer", "percent": "80"}]
                ).status_code == 201
    assert rule(t, "walk_in", "split", half("first_owner", "closer")).status_code == 201

    # a walk-in: first owned in Shanghai, bought in Wuhan — split between the two branches
    lead = owned(t, "13800139002", "rep")
    give(t, lead["id"], t.users["rep2"])
    deal = won(t, lead["id"], "999.99")
    lines = {(e.branch_id, e.user_id): e.amount for e in entries(t, deal_id=deal["id"], kind="credit")}
    assert lines == {(shanghai, t.users["rep"]): D("500.00"), (wuhan, t.users["rep2"]): D("499.99")}
    assert t.get(f"{S}/deals/{deal['id']}/credits").get_json()["versions"][0]["situation"] == "walk_in"

    # the same customer again, in Wuhan: a walk-in still (it comes before repurchase)
    again = won(t, lead["id"], "100.00")
    assert again["kind"] == "repurchase" and len(entries(t, deal_id=again["id"], kind="credit")) == 2

    # a repurchase inside one branch: the repurchase rule (first owner); the first purchase had no rule
    local = owned(t, "13800139007", "rep")
    give(t, local["id"], t.users["manager"])
    first = won(t, local["id"], "70.00")
    again = won(t, local["id"], "30.00")
    assert {e.user_id for e in entries(t, deal_id=first["id"])} == {t.users["manager"]}  # owner at win
    assert {(e.branch_id, e.user_id) for e in entries(t, deal_id=again["id"])} == {(shanghai, t.users["rep"])}

    # a referral: the inviter named on the lead gets 20 %
    ref = owned(t, "13800139003", "manager", source="referral", attributes={"inviter_id": t.users["rep"]})
    deal = won(t, ref["id"], "50.00")
    assert {e.user_id: e.amount for e in entries(t, deal_id=deal["id"], kind="credit")} == {
        t.users["rep"]: D("10.00"), t.users["manager"]: D("40.00")}


def test_a_rule_applies_from_its_effective_date(app, clock):
    t = on(app)
    branch(t, team_id=t.team_id)
    assert rule(t, "first_purchase", "first_owner", effective_from="2026-04-01T00:00:00+08:00").status_code == 201
    lead = owned(t, "13800139004", "rep")
    give(t, lead["id"], t.users["rep2"])
    march = won(t, lead["id"], "10.00")  # before the rule: the built-in owner at win
    assert {e.user_id for e in entries(t, deal_id=march["id"])} == {t.users["rep2"]}
    assert t.get(f"{S}/deals/{march['id']}/credits").get_json()["versions"][0]["rule_version"] == 0
    clock.advance(days=31)
    april = won(t, lead["id"], "10.00", kind="first_purchase")
    assert {e.user_id for e in entries(t, deal_id=april["id"])} == {t.users["rep"]}


def test_an_override_is_a_new_version_and_the_deal_still_adds_up(app):
    t = on(app)
    b = branch(t, team_id=t.team_id)
    lead = owned(t, "13800139005", "rep")
    deal = won(t, lead["id"], "100.00")
    refund(t, deal["id"], "10.00")
    body = {"reason": "rep2 did the demo", "lines": [
        {"branch_id": b, "user_id": t.users["rep"], "percent": "33.3333"},
        {"branch_id": b, "user_id": t.users["rep2"], "percent": "66.6667"}]}
    assert t.post(f"{S}/deals/{deal['id']}/credits", json=body, who="manager").status_code == 403
    r = t.post(f"{S}/deals/{deal['id']}/credits", json=body)
    assert r.status_code == 201, r.get_json()
    versions = r.get_json()["versions"]
    assert [(v["version"], v["current"], v["reason"]) for v in versions] == [
        (2, True, "rep2 did the demo"), (1, False, "")]
    assert sum(D(x["amount"]) for x in versions[0]["lines"]) == D("100.00")
    rows = entries(t, deal_id=deal["id"], kind="credit")
    assert total(rows) == D("90.00")  # still the amount less the refunds
    assert {e.user_id: sum(x.amount for x in rows if x.user_id == e.user_id) for e in rows} == {
        t.users["rep"]: D("30.00"), t.users["rep2"]: D("60.00")}
    refund(t, deal["id"], "90.00")
    assert total(entries(t, deal_id=deal["id"], kind="credit")) == 0
    # bad overrides: nothing written
    sets = count(t, CreditSet), count(t, Entry)
    for bad in (
        {"reason": "x", "lines": [{"branch_id": b, "user_id": t.users["rep"], "percent": "99"}]},
        {"reason": "", "lines": [{"branch_id": b, "user_id": t.users["rep"], "percent": "100"}]},
        {"reason": "x", "lines": [{"branch_id": b, "user_id": t.users["rep"], "percent": 100}]},
        {"reason": "x", "lines": [{"branch_id": 10**12, "user_id": t.users["rep"], "percent": "100"}]},
        {"reason": "x", "lines": [{"branch_id": b, "user_id": 10**12, "percent": "100"}]},
    ):
        assert t.post(f"{S}/deals/{deal['id']}/credits", json=bad).status_code == 422, bad
    assert (count(t, CreditSet), count(t, Entry)) == sets


def test_another_tenants_deal_is_not_found(app):
    a, other = on(app), on(app)
    b = branch(a, team_id=a.team_id)
    deal = won(a, owned(a, "13800139006")["id"], "10.00")
    branch(other, team_id=other.team_id)
    assert other.get(f"{S}/deals/{deal['id']}/credits").status_code == 404
    body = {"reason": "x", "lines": [{"branch_id": b, "user_id": None, "percent": "100"}]}
    assert other.post(f"{S}/deals/{deal['id']}/credits", json=body).status_code == 404
