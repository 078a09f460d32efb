"""Privacy requests (PIPL): export a person's data, erase a person, and the audit of both.

The erasure tests look at the database itself, not only at the API: "the
personal data is gone" means no row of the tenant still holds it, in the
leads, touches, activities, ledgers, refunds or the outbox.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from typing import Any

import pytest
from sqlalchemy import select, text

from pelago.core.models import Import, PrivacyAudit
from pelago.core.services import privacy
from tests.conftest import TenantHandle, new_tenant
from tests.plugins import recorder

PHONE = "13800138000"
E164 = "+8613800138000"
NAME = "Zhang Wei Privacy"
EMAIL = "zhang.privacy@example.com"
ADDRESS = "Haidian Road 18"


@pytest.fixture
def t(make_app) -> TenantHandle:
    recorder.CALLS.clear()
    handle = new_tenant(make_app(("recorder",)))
    assert handle.put("/api/v1/plugins/recorder", json={"enabled": True}).status_code == 200
    yield handle
    recorder.CALLS.clear()


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.get_json()
    return r.get_json()


def person(t: TenantHandle) -> dict[str, Any]:
    """A person with a bit of everything: two submissions, a note, stages, an owner, a deal and a refund."""
    lead = ok(t.post("/api/v1/leads", json={
        "name": NAME, "phone": PHONE, "region": "Beijing", "attributes": {"address": ADDRESS},
        "utm_source": "douyin", "utm_campaign": "winter", "click_id": "clk-777", "external_id": "dy-lead-777",
    }), 201)
    ok(t.post("/api/v1/leads", json={"phone": "+86 138-0013-8000", "email": EMAIL, "name": NAME}))  # merged
    lid = lead["id"]
    ok(t.post(f"/api/v1/leads/{lid}/activities", json={"kind": "call", "note": f"called {NAME} at {ADDRESS}"}), 201)
    ok(t.post(f"/api/v1/leads/{lid}/assign", "manager", json={"user_id": t.users["rep"], "note": f"{NAME} asked"}))
    ok(t.post(f"/api/v1/leads/{lid}/stage", json={"stage": "lost", "lost_reason": f"{NAME} moved to {ADDRESS}"}))
    deal = ok(t.post(f"/api/v1/leads/{lid}/deals", json={"amount": "100.00", "product": "course"}), 201)
    ok(t.post(f"/api/v1/deals/{deal['id']}/refunds", json={"amount": "30.00", "reason": f"{NAME} is ill"}), 201)
    return {"lead_id": lid, "deal_id": deal["id"]}


def tenant_text(t: TenantHandle) -> str:
    """Every core row of the tenant that can hold a person's data, as one text to search."""
    tables = ("core_lead", "core_touch", "core_activity", "core_ownership_change", "core_stage_change",
              "core_deal", "core_refund", "core_event", "core_privacy_audit")
    out = []
    with t.runtime.sessions() as s:
        for table in tables:
            rows = s.execute(text(f"SELECT * FROM {table} WHERE tenant_id = :t"), {"t": t.id}).mappings().all()
            out.append(json.dumps([dict(r) for r in rows], default=str, ensure_ascii=False))
    return "\n".join(out)


def audit_rows(t: TenantHandle) -> list[PrivacyAudit]:
    with t.runtime.sessions() as s:
        return list(s.scalars(select(PrivacyAudit).where(PrivacyAudit.tenant_id == t.id)
                              .order_by(PrivacyAudit.id)))


# --- export -------------------------------------------------------------------------


def test_an_export_holds_everything_about_the_person(t):
    p = person(t)
    doc = ok(t.post("/api/v1/privacy/exports", json={"phone": "138 0013 8000"}))  # any formatting
    assert doc["subject"] == {"phone": E164} and doc["tenant"] == t.slug
    [one] = doc["leads"]
    lead = one["lead"]
    assert (lead["id"], lead["name"], lead["phone"], lead["email"]) == (p["lead_id"], NAME, E164, EMAIL)
    assert lead["attributes"] == {"address": ADDRESS} and lead["region"] == "Beijing"
    assert [tc["merged"] for tc in one["touches"]] == [False, True]
    first = one["touches"][0]
    assert (first["utm_source"], first["click_id"], first["idempotency_key"]) == ("douyin", "clk-777", "dy-lead-777")
    assert first["raw"]["name"] == NAME
    assert [a["note"] for a in one["activities"]] == [f"called {NAME} at {ADDRESS}"]
    assert [(c["old"], c["new"]) for c in one["stage_changes"]] == [(None, "new"), ("new", "lost"), ("lost", "won")]
    assert [o["reason"] for o in one["ownership"]] == ["created", "manual"]
    [deal] = one["deals"]
    assert deal["amount"] == "100.00" and [r["reason"] for r in deal["refunds"]] == [f"{NAME} is ill"]
    assert doc["plugins"] == {"recorder": {"seen_leads": [p["lead_id"]]}}
    [row] = audit_rows(t)
    assert (row.action, row.actor, row.actor_id, row.lead_ids) == ("export", f"admin@{t.slug}.test",
                                                                   t.users["admin"], [p["lead_id"]])
    assert doc["audit_id"] == row.id


def test_an_export_by_email_finds_every_lead_with_it_lowercased(t):
    a = t.lead("13800138001", email="Two.Phones@Example.com")
    b = t.lead("13800138002", email="two.phones@example.com")
    t.lead("13800138003", email="someone.else@example.com")
    doc = ok(t.post("/api/v1/privacy/exports", json={"email": " TWO.PHONES@example.COM "}))
    assert doc["subject"] == {"email": "two.phones@example.com"}
    assert [d["lead"]["id"] for d in doc["leads"]] == [a["id"], b["id"]]


def test_nobody_and_another_tenants_person_export_nothing(t, make_app):
    p = person(t)
    other = new_tenant(t.app)
    doc = ok(other.post("/api/v1/privacy/exports", json={"phone": PHONE}))
    assert doc["leads"] == [] and doc["plugins"] == {}
    assert [r.lead_ids for r in audit_rows(other)] == [[]]  # asked, audited, nothing found
    erased = ok(other.post("/api/v1/privacy/erasures", json={"phone": PHONE, "reason": "asked"}))
    assert erased["lead_ids"] == [] and erased["event_id"] is None
    # The first tenant's person is untouched.
    assert ok(t.get(f"/api/v1/leads/{p['lead_id']}"))["phone"] == E164


# --- erasure ------------------------------------------------------------------------


def test_an_erasure_anonymises_the_person_and_keeps_the_ledgers(t):
    p = person(t)
    lid = p["lead_id"]
    before = ok(t.get(f"/api/v1/leads/{lid}/history"))["items"]
    assert NAME in tenant_text(t) and E164 in tenant_text(t)
    done = ok(t.post("/api/v1/privacy/erasures", json={"phone": PHONE, "reason": "request #12 by phone"}))
    assert done["lead_ids"] == [lid]

    lead = ok(t.get(f"/api/v1/leads/{lid}"))
    assert (lead["name"], lead["phone"], lead["email"], lead["region"]) == ("", None, f"erased:{lid}", None)
    assert lead["attributes"] == {} and lead["lost_reason"] is None
    # What is not personal stays: stage, owner, customer, the deal and its refund, every ledger row.
    assert (lead["stage"], lead["owner_id"], lead["is_customer"]) == ("won", t.users["rep"], True)
    deal = ok(t.get(f"/api/v1/deals/{p['deal_id']}"))
    assert (deal["amount"], deal["refunded"], deal["lead_id"]) == ("100.00", "30.00", lid)
    after = ok(t.get(f"/api/v1/leads/{lid}/history"))["items"]
    assert [(i["type"], i["id"]) for i in after] == [(i["type"], i["id"]) for i in before]
    assert [i["note"] for i in after if i["type"] != "stage"] == ["", "", ""]
    assert [i["lost_reason"] for i in after if i["type"] == "stage"] == [None, "(erased)", None]

    # Nothing of the person is left anywhere in the tenant's rows, outbox included.
    left = tenant_text(t)
    for personal in (NAME, E164, PHONE, EMAIL, ADDRESS, "Beijing", "clk-777", "dy-lead-777", "winter"):
        assert personal not in left, personal
    with t.runtime.sessions() as s:
        touches = s.execute(text("SELECT raw, utm_source, click_id, channel FROM core_touch WHERE lead_id = :l"),
                            {"l": lid}).all()
    assert len(touches) == 2 and all(r.utm_source is None and r.click_id is None for r in touches)
    assert {r.channel for r in touches} == {"api"}


def test_an_erased_person_is_not_found_again_and_comes_back_as_a_new_lead(t):
    p = person(t)
    ok(t.post("/api/v1/privacy/erasures", json={"email": EMAIL, "reason": "asked"}))
    assert ok(t.get("/api/v1/leads", query_string={"q": PHONE}))["items"] == []
    assert ok(t.post("/api/v1/privacy/exports", json={"phone": PHONE}))["leads"] == []
    again = ok(t.post("/api/v1/leads", json={"phone": PHONE, "email": EMAIL, "external_id": "dy-lead-777"}), 201)
    assert again["id"] != p["lead_id"] and again["merged"] is False


def test_erasing_twice_is_fine_and_audited_twice(t):
    p = person(t)
    first = ok(t.post("/api/v1/privacy/erasures", json={"phone": PHONE, "reason": "asked"}))
    snapshot = tenant_text(t)
    second = ok(t.post("/api/v1/privacy/erasures", json={"phone": PHONE, "reason": "asked again"}))
    assert first["lead_ids"] == [p["lead_id"]] and second["lead_ids"] == [] and second["event_id"] is None
    rows = audit_rows(t)
    assert [(r.action, r.lead_ids, r.reason) for r in rows] == [
        ("erase", [p["lead_id"]], "asked"), ("erase", [], "asked again"),
    ]
    # The second one changed nothing but its own audit row.
    assert snapshot.split("\n")[:-1] == tenant_text(t).split("\n")[:-1]


def test_the_erasure_reaches_the_plugins_through_the_outbox(t):
    p = person(t)
    done = ok(t.post("/api/v1/privacy/erasures", json={"phone": PHONE, "reason": "asked"}))
    [call] = recorder.calls("person_erased", t.id)
    assert call == {"event_id": done["event_id"], "items": [{"lead_id": p["lead_id"]}]}
    deliveries = ok(t.get("/api/v1/deliveries", query_string={"plugin": "recorder"}))["items"]
    assert [d["state"] for d in deliveries if d["event"] == "person_erased"] == ["delivered"]


def test_past_events_keep_their_shape_with_the_personal_keys_blanked(t):
    p = person(t)
    other = t.lead("13800138009", name="Someone Else")
    ok(t.post("/api/v1/privacy/erasures", json={"phone": PHONE, "reason": "asked"}))
    with t.runtime.sessions() as s:
        rows = s.execute(text("SELECT name, payload FROM core_event WHERE tenant_id = :t ORDER BY id"),
                         {"t": t.id}).all()
    payloads = [(name, json.loads(pl) if isinstance(pl, str) else pl) for name, pl in rows]
    created = [i for name, pl in payloads if name == "lead_created" for i in pl["items"]]
    mine = next(i for i in created if i["lead_id"] == p["lead_id"])
    assert (mine["name"], mine["phone"], mine["email"], mine["stage"]) == ("", None, None, "new")
    assert next(i for i in created if i["lead_id"] == other["id"])["name"] == "Someone Else"  # others untouched
    refunded = [i for name, pl in payloads if name == "deal_refunded" for i in pl["items"]]
    assert [(i["reason"], i["amount"]) for i in refunded] == [("(erased)", "30.00")]


@pytest.mark.parametrize("body", [
    {},
    {"phone": PHONE, "email": EMAIL},
    {"phone": "12345"},
    {"email": "not-an-address"},
    {"phone": PHONE, "reason": ""},
    {"phone": PHONE},
    {"phone": PHONE, "reason": "x" * 501},
    {"phone": PHONE, "reason": "asked", "surprise": 1},
])
def test_bad_erasure_requests_are_422_and_write_nothing(t, body):
    person(t)
    before = tenant_text(t)
    r = t.post("/api/v1/privacy/erasures", json=body)
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["errors"]["json"]  # field errors
    assert tenant_text(t) == before and audit_rows(t) == []


@pytest.mark.parametrize("body", [{}, {"phone": PHONE, "email": EMAIL}, {"phone": "+1 555"}, {"phone": 13800138000}])
def test_bad_export_requests_are_422_and_write_nothing(t, body):
    r = t.post("/api/v1/privacy/exports", json=body)
    assert r.status_code == 422, r.get_json()
    assert audit_rows(t) == []


@pytest.mark.parametrize("who", ["manager", "rep"])
def test_only_an_admin_may_export_erase_or_read_the_audit(t, who):
    p = person(t)
    assert t.post("/api/v1/privacy/exports", who, json={"phone": PHONE}).status_code == 403
    assert t.post("/api/v1/privacy/erasures", who, json={"phone": PHONE, "reason": "x"}).status_code == 403
    assert t.get("/api/v1/privacy/audit", who).status_code == 403
    assert ok(t.get(f"/api/v1/leads/{p['lead_id']}"))["name"] == NAME and audit_rows(t) == []


# --- the audit ----------------------------------------------------------------------


def test_the_audit_lists_every_request_newest_first_with_paging_and_no_clear_subject(t):
    p = person(t)
    ok(t.post("/api/v1/privacy/exports", json={"phone": PHONE}))
    ok(t.post("/api/v1/privacy/exports", json={"email": "nobody@example.com"}))
    ok(t.post("/api/v1/privacy/erasures", json={"phone": PHONE, "reason": "ticket 9"}))
    page = ok(t.get("/api/v1/privacy/audit", query_string={"limit": 2}))
    assert [i["action"] for i in page["items"]] == ["erase", "export"] and page["next_cursor"]
    rest = ok(t.get("/api/v1/privacy/audit", query_string={"limit": 2, "cursor": page["next_cursor"]}))
    assert [i["subject_kind"] for i in page["items"] + rest["items"]] == ["phone", "email", "phone"]
    assert rest["next_cursor"] is None
    erase = page["items"][0]
    assert (erase["actor"], erase["actor_id"], erase["lead_ids"], erase["reason"]) == (
        f"admin@{t.slug}.test", t.users["admin"], [p["lead_id"]], "ticket 9")
    # The two rows about one phone have different salts and hashes, yet the filter finds both.
    export = rest["items"][0]
    assert len(erase["subject_hash"]) == len(export["subject_hash"]) == 64
    assert erase["subject_salt"] != export["subject_salt"] and erase["subject_hash"] != export["subject_hash"]
    about = ok(t.get("/api/v1/privacy/audit", query_string={"phone": "+86 138 0013 8000"}))["items"]
    assert [i["action"] for i in about] == ["erase", "export"]
    one = ok(t.get("/api/v1/privacy/audit", query_string={"phone": PHONE, "limit": 1}))
    assert [i["action"] for i in one["items"]] == ["erase"]
    more = ok(t.get("/api/v1/privacy/audit", query_string={"phone": PHONE, "limit": 1, "cursor": one["next_cursor"]}))
    assert [i["action"] for i in more["items"]] == ["export"] and more["next_cursor"] is None
    assert [i["action"] for i in ok(t.get("/api/v1/privacy/audit", query_string={"action": "export"}))["items"]] \
        == ["export", "export"]
    assert E164 not in json.dumps(page) + json.dumps(rest)
    bad = t.get("/api/v1/privacy/audit", query_string={"phone": PHONE, "email": EMAIL})
    assert bad.status_code == 422 and "phone" in bad.get_json()["errors"]["query"]
    assert t.get("/api/v1/privacy/audit", query_string={"phone": "123"}).status_code == 422
    # Another tenant sees none of it.
    assert ok(new_tenant(t.app).get("/api/v1/privacy/audit"))["items"] == []


def test_the_subject_hash_is_checkable_by_whoever_knows_the_phone(t):
    person(t)
    ok(t.post("/api/v1/privacy/exports", json={"phone": PHONE}))
    [row] = audit_rows(t)
    assert privacy.subject_matches(row, privacy.Subject("phone", E164))
    assert not privacy.subject_matches(row, privacy.Subject("phone", "+8613800138001"))
    assert not privacy.subject_matches(row, privacy.Subject("email", E164))


def test_the_ledgers_and_the_audit_stay_append_only_on_postgresql(t, pelago_db):
    if pelago_db != "postgresql":
        pytest.skip("the append-only triggers are PostgreSQL's")
    from sqlalchemy.exc import DBAPIError

    person(t)
    ok(t.post("/api/v1/privacy/erasures", json={"phone": PHONE, "reason": "asked"}))
    for sql in ("UPDATE core_stage_change SET lost_reason = 'x' WHERE tenant_id = :t",
                "UPDATE core_refund SET reason = 'x' WHERE tenant_id = :t",
                "DELETE FROM core_ownership_change WHERE tenant_id = :t",
                "UPDATE core_privacy_audit SET reason = 'x' WHERE tenant_id = :t",
                "DELETE FROM core_privacy_audit WHERE tenant_id = :t"):
        with t.runtime.sessions() as s, pytest.raises(DBAPIError, match="append-only"):
            s.execute(text(sql), {"t": t.id})
    # Even inside an erasure's switch, the audit and deletions stay refused.
    with t.runtime.sessions() as s:
        s.execute(text("SELECT set_config('pelago.erasing', 'on', true)"))
        with pytest.raises(DBAPIError, match="append-only"):
            s.execute(text("UPDATE core_privacy_audit SET reason = 'x' WHERE tenant_id = :t"), {"t": t.id})
    with t.runtime.sessions() as s:
        s.execute(text("SELECT set_config('pelago.erasing', 'on', true)"))
        with pytest.raises(DBAPIError, match="append-only"):
            s.execute(text("DELETE FROM core_stage_change WHERE tenant_id = :t"), {"t": t.id})


# --- the CLI ------------------------------------------------------------------------


def test_the_cli_exports_and_erases_with_the_operator_in_the_audit(t, pelago_cli, tmp_path):
    p = person(t)
    r = pelago_cli("privacy", "export", "--tenant", t.slug, "--phone", PHONE, app=t.app)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert [d["lead"]["id"] for d in doc["leads"]] == [p["lead_id"]] and doc["leads"][0]["lead"]["name"] == NAME
    out = tmp_path / "person.json"
    r = pelago_cli("privacy", "export", "--tenant", t.slug, "--email", EMAIL, "-o", str(out), app=t.app)
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text(encoding="utf-8"))["leads"][0]["lead"]["email"] == EMAIL
    r = pelago_cli("privacy", "erase", "--tenant", t.slug, "--phone", PHONE, "--reason", "letter", app=t.app,
                   input="n\n")
    assert r.exit_code != 0 and ok(t.get(f"/api/v1/leads/{p['lead_id']}"))["name"] == NAME  # not confirmed
    r = pelago_cli("privacy", "erase", "--tenant", t.slug, "--phone", PHONE, "--reason", "letter", "--yes",
                   app=t.app)
    assert r.exit_code == 0 and f"erased leads {p['lead_id']}" in r.output
    assert ok(t.get(f"/api/v1/leads/{p['lead_id']}"))["phone"] is None
    assert [c["items"] for c in recorder.calls("person_erased", t.id)] == [[{"lead_id": p["lead_id"]}]]
    r = pelago_cli("privacy", "erase", "--tenant", t.slug, "--phone", PHONE, "--reason", "letter", "--yes",
                   app=t.app)
    assert r.exit_code == 0 and "nothing to erase" in r.output
    rows = audit_rows(t)
    assert [(r.action, r.actor_id) for r in rows] == [("export", None)] * 2 + [("erase", None)] * 2
    assert all(r.actor.startswith("cli") for r in rows)


def test_the_cli_refuses_bad_input_and_unknown_tenants(t, pelago_cli):
    r = pelago_cli("privacy", "export", "--tenant", t.slug, "--phone", PHONE, "--email", EMAIL, app=t.app)
    assert r.exit_code != 0 and "exactly one" in r.output
    r = pelago_cli("privacy", "erase", "--tenant", "no-such-tenant", "--phone", PHONE, "--reason", "x", "--yes",
                   app=t.app)
    assert r.exit_code != 0 and "no tenant" in r.output
    assert audit_rows(t) == []


def test_an_erasure_blanks_the_persons_rows_in_stored_import_files(t):
    csv_text = (f"name,phone,email,note\n"
                f"李娜,13800138011,else@example.com,keep me\n"
                f'"张伟 {NAME}",{PHONE},{EMAIL},"lives at\n{ADDRESS}"\n'
                f"Third Person,13800138012,,\n")
    r = t.post("/api/v1/imports", data={"file": (io.BytesIO(csv_text.encode("gb18030")), "leads.csv")},
               content_type="multipart/form-data")
    assert r.status_code == 202 and r.get_json()["status"] == "done", r.get_json()
    import_id = r.get_json()["id"]
    lead = ok(t.post("/api/v1/privacy/exports", json={"phone": PHONE}))["leads"][0]["lead"]
    ok(t.post("/api/v1/privacy/erasures", json={"phone": PHONE, "reason": "asked"}))

    with t.runtime.sessions() as s:
        imp = s.get(Import, import_id)
        assert imp is not None
        stored, encoding = imp.content, imp.encoding
    assert encoding == "gb18030"
    rows = list(csv.reader(io.StringIO(stored.decode(encoding), newline="")))
    assert rows == [["name", "phone", "email", "note"], ["李娜", "13800138011", "else@example.com", "keep me"],
                    ["", "", "", ""], ["Third Person", "13800138012", "", ""]]
    for personal in ("张伟", NAME, PHONE, EMAIL, ADDRESS):
        assert personal.encode("gb18030") not in stored
    assert ok(t.get(f"/api/v1/leads/{lead['id']}"))["phone"] is None
    # The import's record still reads as it did.
    assert ok(t.get(f"/api/v1/imports/{import_id}"))["created_leads"] == 3


def test_two_erasures_of_one_person_at_once_erase_once(t):
    p = person(t)
    barrier = threading.Barrier(2)
    answers: list[Any] = []

    def erase() -> None:
        barrier.wait()
        answers.append(t.post("/api/v1/privacy/erasures", json={"phone": PHONE, "reason": "twice at once"}))

    threads = [threading.Thread(target=erase) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in answers] == [200, 200]
    assert sorted(r.get_json()["lead_ids"] for r in answers) == [[], [p["lead_id"]]]
    assert len(recorder.calls("person_erased", t.id)) == 1
    assert sorted(len(r.lead_ids) for r in audit_rows(t)) == [0, 1]


def test_an_erasure_blanks_the_unsent_posts_of_events_about_the_person(make_app, monkeypatch):
    """A post queued by a handler of an event about the erased lead loses its body and is not sent;
    the posts of another person's events keep theirs."""
    from pelago.core.models import OutboundPost
    from pelago.plugin import PluginSpec, hookimpl, queue_post

    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")

    class Hooks:
        @staticmethod
        @hookimpl
        def lead_created(ctx, event):
            item = event.items[0]
            body = json.dumps({"lead": item["lead_id"], "phone": item.get("phone")}).encode()
            queue_post(ctx, "http://127.0.0.1:9/refused", body, plugin="caller")  # refused: stays queued

    spec = PluginSpec(name="caller", title="Caller", description="posts new leads", version="0.1.0",
                      core=">=0.1", hooks=Hooks, default_enabled=True)
    t = new_tenant(make_app(plugins=["caller"], extra=(spec,)))
    erased = ok(t.post("/api/v1/leads", json={"name": NAME, "phone": PHONE}), 201)
    kept = ok(t.post("/api/v1/leads", json={"name": "Li Na", "phone": "13800138099"}), 201)

    def posts() -> list[Any]:
        """The tenant's posts in order: the first lead's, then the second's."""
        with t.runtime.sessions() as s:
            return list(s.execute(select(OutboundPost.body, OutboundPost.status, OutboundPost.last_error)
                                  .where(OutboundPost.tenant_id == t.id).order_by(OutboundPost.id)))

    before = posts()
    assert [json.loads(bytes(p.body))["lead"] for p in before] == [erased["id"], kept["id"]]
    assert [p.status for p in before] == ["queued", "queued"] and E164.encode() in bytes(before[0].body)
    ok(t.post("/api/v1/privacy/erasures", json={"phone": PHONE, "reason": "asked"}))
    gone, other = posts()
    assert (bytes(gone.body), gone.status) == (b"", "failed") and "erased" in gone.last_error
    assert (bytes(other.body), other.status) == (bytes(before[1].body), "queued")


# --- submissions accepted by a webhook and not routed yet -------------------------------------


def _accept(t: TenantHandle, data: dict[str, Any], key: str) -> int:
    """Store a webhook submission as the webhook does, with no router started (the test routes it)."""
    from pelago.core.services import submissions
    from pelago.core.services.intake import Submission

    sub = Submission(data=data, touch={"channel": "site", "utm_source": "winter"},
                     raw={**data, "address": ADDRESS}, key=f"ext:{key}")
    with t.runtime.sessions() as session:
        dedupe, errors = submissions.check(sub, "CN")
        assert not errors, errors
        sid, fresh = submissions.accept(session, tenant_id=t.id, channel_id=None, sub=sub, dedupe=dedupe,
                                        now=t.runtime.clock())
        assert fresh
        session.info.pop(submissions.KICK, None)  # no router: the test starts it
        session.commit()
    return sid


def _submissions(t: TenantHandle) -> dict[int, Any]:
    with t.runtime.sessions() as s:
        return {r.id: r for r in s.execute(text(
            "SELECT id, status, outcome, lead_id, dedupe, key, data, touch, raw, errors FROM core_submission "
            "WHERE tenant_id = :t"), {"t": t.id}).mappings()}


def _route(t: TenantHandle) -> None:
    from pelago.core.services import submissions

    submissions.route_pending(t.runtime)


def test_an_erasure_blanks_the_persons_submissions_not_yet_routed_and_they_never_make_a_lead(t):
    """Was a gap: a submission accepted (202) but not routed kept the person's payload after the erasure,
    and the router then made the person again."""
    by_phone = _accept(t, {"name": NAME, "phone": "+86 138 0013 8000"}, "a")
    by_email = _accept(t, {"name": NAME, "phone": "13800138011", "email": EMAIL.upper()}, "b")  # dedupe: its phone
    someone_else = _accept(t, {"name": "Li Na", "phone": "13800138099"}, "c")
    assert PHONE in json.dumps([dict(r) for r in _submissions(t).values()], default=str)

    done = ok(t.post("/api/v1/privacy/erasures", json={"phone": PHONE, "reason": "asked before routing"}))
    assert done["lead_ids"] == []  # the person had no lead yet: only the submission
    ok(t.post("/api/v1/privacy/erasures", json={"email": EMAIL, "reason": "and by email"}))

    rows = _submissions(t)
    for sid in (by_phone, by_email):
        row = rows[sid]
        assert (row["status"], row["outcome"], row["lead_id"], row["dedupe"]) == ("failed", None, None, None)
        assert [json.loads(v) if isinstance(v, str) else v for v in (row["data"], row["touch"], row["raw"])] == [
            {}, {}, {}]
        assert row["key"] == f"erased:{sid}"
        assert "erased" in json.dumps(row["errors"])
        got = ok(t.get(f"/api/v1/submissions/{sid}"))
        assert got["status"] == "failed" and got["lead_id"] is None
    left = json.dumps([dict(r) for r in rows.values() if r["id"] != someone_else], default=str, ensure_ascii=False)
    for personal in (NAME, PHONE, "138 0013 8000", "13800138011", EMAIL, EMAIL.upper(), ADDRESS, "winter"):
        assert personal not in left, personal
    assert rows[someone_else]["status"] == "accepted" and "Li Na" in json.dumps(rows[someone_else]["data"])

    _route(t)  # the router routes the other person's, and never makes the erased one again
    rows = _submissions(t)
    assert rows[someone_else]["status"] == "processed"
    assert [rows[sid]["status"] for sid in (by_phone, by_email)] == ["failed", "failed"]
    phones = {x["phone"] for x in ok(t.get("/api/v1/leads?limit=200"))["items"]}
    assert phones == {"+8613800138099"}


def test_an_export_holds_the_persons_submissions_not_yet_routed_and_not_after_the_erasure(t, make_app):
    """Was a gap: erasure blanked the person's accepted (not routed) webhook submissions, but the export,
    "everything held about the person", did not show them. Matched as the erasure matches them."""
    lead = ok(t.post("/api/v1/leads", json={"name": NAME, "phone": PHONE, "email": EMAIL}), 201)
    by_phone = _accept(t, {"name": NAME, "phone": "+86 138 0013 8000"}, "f")
    by_email = _accept(t, {"name": NAME, "email": EMAIL.upper()}, "g")  # the email of the person's lead
    _accept(t, {"name": "Li Na", "phone": "13800138099"}, "h")  # someone else
    other = new_tenant(t.app)
    _accept(other, {"name": NAME, "phone": PHONE}, "i")  # the same phone in another tenant

    doc = ok(t.post("/api/v1/privacy/exports", json={"phone": PHONE}))
    assert [d["lead"]["id"] for d in doc["leads"]] == [lead["id"]]
    assert [x["id"] for x in doc["submissions"]] == [by_phone, by_email]
    first = doc["submissions"][0]
    assert first["status"] == "accepted" and first["raw"]["address"] == ADDRESS and first["dedupe"] == E164
    assert first["touch"]["utm_source"] == "winter" and first["key"] == "ext:f"
    assert "lease_token" not in first and "tenant_id" not in first
    # Without a lead: found by the person's own phone all the same; another tenant's are not theirs.
    [alone] = ok(other.post("/api/v1/privacy/exports", json={"phone": PHONE}))["submissions"]
    assert alone["key"] == "ext:i" and alone["id"] not in (by_phone, by_email)
    # Erased: blanked and failed for good, they no longer name the person, and are not exported again.
    ok(t.post("/api/v1/privacy/erasures", json={"phone": PHONE, "reason": "asked"}))
    assert ok(t.post("/api/v1/privacy/exports", json={"phone": PHONE}))["submissions"] == []


def test_an_erasure_blanks_the_submissions_naming_another_phone_or_email_of_the_persons_leads(t):
    """Erased by phone: a pending submission with the email of that lead (and no phone) goes too, and a
    failed one holding the phone loses its payload."""
    lead = ok(t.post("/api/v1/leads", json={"name": NAME, "phone": PHONE, "email": EMAIL}), 201)
    pending = _accept(t, {"name": NAME, "email": EMAIL}, "d")
    failed = _accept(t, {"name": NAME, "phone": PHONE}, "e")
    with t.runtime.sessions() as s:  # as a router gives up on a submission
        s.execute(text("UPDATE core_submission SET status = 'failed', errors = :e WHERE id = :i"),
                  {"e": json.dumps({"submission": [f"{NAME} could not be routed"]}), "i": failed})
        s.commit()

    done = ok(t.post("/api/v1/privacy/erasures", json={"phone": PHONE, "reason": "asked"}))
    assert done["lead_ids"] == [lead["id"]]
    rows = _submissions(t)
    assert {rows[i]["status"] for i in (pending, failed)} == {"failed"}
    left = json.dumps([dict(r) for r in rows.values()], default=str, ensure_ascii=False)
    for personal in (NAME, PHONE, E164, EMAIL):
        assert personal not in left, personal
    _route(t)
    assert ok(t.get("/api/v1/leads?limit=200"))["items"] == [ok(t.get(f"/api/v1/leads/{lead['id']}"))]


def test_an_erasure_reads_only_the_persons_submissions_not_the_tenants_other_pending_ones(t):
    """Was: every pending or failed submission of the tenant was read, payload and all, and matched in
    Python (twice per erasure). Now the match is in SQL: run again after the erasure, each query the
    erasure made of ``core_submission`` finds nothing (the person's rows are blanked, and no one else's
    ever matched)."""
    from sqlalchemy import event

    mine = _accept(t, {"name": NAME, "phone": "13800138011", "email": f"  {EMAIL.upper()}\t"}, "f")
    others = [_accept(t, {"name": "Li Na", "phone": f"138001380{n:02d}", "email": f"li{n}@example.com"}, f"g{n}")
              for n in range(50, 53)]
    queries: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "core_submission" in statement:
            queries.append((statement, parameters))

    event.listen(t.runtime.engine, "before_cursor_execute", record)
    try:
        ok(t.post("/api/v1/privacy/erasures", json={"email": EMAIL, "reason": "asked"}))
    finally:
        event.remove(t.runtime.engine, "before_cursor_execute", record)

    assert queries
    with t.runtime.engine.connect() as conn:
        for statement, parameters in queries:
            assert conn.exec_driver_sql(statement, parameters).all() == [], statement
    rows = _submissions(t)
    assert rows[mine]["status"] == "failed" and rows[mine]["dedupe"] is None
    assert [rows[i]["status"] for i in others] == ["accepted"] * 3


def test_an_erasure_finds_a_pending_submissions_email_with_letters_and_spaces_beyond_ascii(t):
    """The SQL match lowercases and trims ASCII only (SQLite's ``lower`` leaves É alone): a mapped email
    with other characters is matched as intake strips and lowercases it, in Python."""
    wide = _accept(t, {"name": NAME, "phone": "13800138012", "email": "\u3000ÉLÈVE.Privacy@Example.com "}, "h")
    ascii_only = _accept(t, {"name": NAME, "phone": "13800138013", "email": "\tELEVE.privacy@example.com"}, "i")
    other = _accept(t, {"name": "Li Na", "phone": "13800138014", "email": "ÉLÈVE.autre@example.com"}, "j")
    ok(t.post("/api/v1/privacy/erasures", json={"email": "élève.privacy@example.com", "reason": "asked"}))
    rows = _submissions(t)
    assert (rows[wide]["status"], rows[wide]["dedupe"]) == ("failed", None)
    assert rows[ascii_only]["status"] == "accepted"  # another address: e, not é
    assert rows[other]["status"] == "accepted"
    ok(t.post("/api/v1/privacy/erasures", json={"email": "eleve.privacy@example.com", "reason": "asked"}))
    rows = _submissions(t)
    assert (rows[ascii_only]["status"], rows[other]["status"]) == ("failed", "accepted")
