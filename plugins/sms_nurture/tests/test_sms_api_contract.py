"""The API's contract under generated requests, and the command line."""

from __future__ import annotations

from pelago.testing import check_routes

from .sms_helpers import count_rows, enrol, lead, messages, sequence, sms_tenant, template


def test_generated_requests_get_no_5xx_and_match_the_spec(app):
    t = sms_tenant(app)
    seq = sequence(t, 0)
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    checked = check_routes(app, "/api/v1/sms_nurture", t.headers("admin"), values={
        "sequence_id": [seq["id"]], "template_id": [template(t)], "lead_id": [a["id"]],
        "step_id": [seq["steps"][0]["id"]], "tenant": [t.slug], "provider": ["log"]}, max_examples=8)
    assert len(checked) >= 20


def test_pelago_sms_dispatch_sends_what_is_due_with_a_progress_bar(app, pelago_cli):
    t = sms_tenant(app)
    seq = sequence(t, 0)
    ids = [lead(t)["id"] for _ in range(3)]
    enrol(t, seq["id"], *ids)
    result = pelago_cli("sms", "dispatch", "--tenant", t.slug, app=app)
    assert result.exit_code == 0, result.output
    assert f"{t.slug}: 3 due" in result.output and "sent 3, failed 0" in result.output
    assert [m["status"] for m in messages(t, sequence_id=seq["id"])] == ["sent"] * 3
    again = pelago_cli("sms_nurture", "dispatch", "--tenant", t.slug, app=app)
    assert "sent 0" in again.output and count_rows(t, "sms_nurture_log_sent") == 3


def test_pelago_sms_scan_enrols_the_leads_nobody_called(app, pelago_cli, clock):
    t = sms_tenant(app)
    sequence(t, 0, trigger="not_contacted", trigger_hours=2)
    lead(t)
    lead(t)
    clock.advance(hours=3)
    assert f"{t.slug}: enrolled 2" in pelago_cli("sms", "scan", "--tenant", t.slug, app=app).output
    assert f"{t.slug}: enrolled 0" in pelago_cli("sms", "scan", "--tenant", t.slug, app=app).output
