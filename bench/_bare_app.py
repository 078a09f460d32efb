"""The baselines of bench/intake_http.py: bare Flask + SQLAlchemy endpoints, no Pelago.

- ``POST /intake`` reads the JSON body and inserts it as one ``core_lead``
  row (SQLAlchemy Core, one transaction), answering 201 with the new id. No
  signature, no mapping, no normalisation, no dedupe, no routing, no touch,
  ledger or events: the least a webhook that stores a lead can do (the
  *bare* baseline of every side).
- ``POST /accept`` makes the same write as Pelago's webhook accept, by hand:
  one ``core_submission`` row, ``INSERT … ON CONFLICT (tenant_id, key) DO
  NOTHING RETURNING id`` (the *same-writes* baseline of the accept side).
- ``POST /lead`` makes the same writes as a routed ``POST /api/v1/leads``,
  by hand, in one statement: the lead with its owner (round robin over the
  team's reps in Python), its touch, stage history, ownership ledger row and
  one ``lead_created`` outbox event, as data-modifying CTEs (the *same-writes*
  baseline of ``api_create``).

Served by gunicorn with the same settings as Pelago::

    BENCH_DATABASE_URL=… BENCH_TENANT_ID=… BENCH_TEAM_ID=… BENCH_REPS=1,2,3 gunicorn bench._bare_app:app
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from datetime import datetime, timezone
from typing import Any

from flask import Flask, jsonify, request
from sqlalchemy import create_engine, insert, text

from pelago.core.models import Lead

app = Flask(__name__)
engine = create_engine(os.environ["BENCH_DATABASE_URL"], pool_size=10, max_overflow=20)
TENANT_ID = int(os.environ["BENCH_TENANT_ID"])
TEAM_ID = int(os.environ.get("BENCH_TEAM_ID") or 0) or None
REPS = itertools.cycle([int(r) for r in (os.environ.get("BENCH_REPS") or "0").split(",")])
_REPS_LOCK = threading.Lock()
LEADS: Any = Lead.__table__

ACCEPT = text("""
INSERT INTO core_submission (tenant_id, channel_id, key, dedupe, data, touch, raw, status, attempts, received_at)
VALUES (:tenant, NULL, :key, :dedupe, CAST(:data AS jsonb), CAST(:touch AS jsonb), CAST(:raw AS jsonb),
        'accepted', 0, :now)
ON CONFLICT (tenant_id, key) DO NOTHING RETURNING id
""")

LEAD = text("""
WITH lead AS (
  INSERT INTO core_lead (tenant_id, name, phone, email, source, stage, is_customer, owner_id, team_id, locked,
                         attributes, created_at, updated_at, assigned_at, stage_changed_at, version)
  VALUES (:tenant, :name, :phone, NULL, :source, 'new', false, :owner, :team, false, '{}', :now, :now, :now, :now, 1)
  RETURNING id
), touch AS (
  INSERT INTO core_touch (tenant_id, lead_id, merged, raw, channel, source, received_at)
  SELECT :tenant, id, false, CAST(:raw AS jsonb), 'api', :source, :now FROM lead
), stage AS (
  INSERT INTO core_stage_change (tenant_id, lead_id, new, at) SELECT :tenant, id, 'new', :now FROM lead
), ledger AS (
  INSERT INTO core_ownership_change (tenant_id, lead_id, to_user_id, to_team_id, reason, rule, note, detail, at)
  SELECT :tenant, id, :owner, :team, 'created', 'round_robin', '', '{}', :now FROM lead
)
INSERT INTO core_event (tenant_id, name, payload, created_at)
SELECT :tenant, 'lead_created', json_build_object('items', json_build_array(json_build_object(
  'lead_id', id, 'owner_id', :owner, 'team_id', :team)))::jsonb, :now FROM lead
RETURNING (SELECT id FROM lead)
""")


@app.get("/health")
def health() -> Any:
    return jsonify({"status": "ok"})


@app.post("/intake")
def intake() -> Any:
    body = request.get_json(force=True)
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        lead_id = conn.execute(insert(LEADS).returning(LEADS.c.id), {
            "tenant_id": TENANT_ID, "name": body.get("name") or "", "phone": body.get("phone"),
            "email": body.get("email"), "source": body.get("source"), "region": None, "product": None,
            "stage": "new", "is_customer": False, "owner_id": None, "team_id": None, "locked": False,
            "attributes": {}, "created_at": now, "updated_at": now, "assigned_at": None,
            "stage_changed_at": now, "version": 1,
        }).scalar_one()
    return jsonify({"lead_id": lead_id}), 201


@app.post("/accept")
def accept() -> Any:
    raw = request.get_data()
    body = json.loads(raw)
    data = {k: body.get(k) for k in ("name", "phone", "email", "source")}
    touch = {k: body.get(k) for k in ("utm_source", "utm_medium", "utm_campaign")}
    with engine.begin() as conn:
        sid = conn.execute(ACCEPT, {
            "tenant": TENANT_ID, "key": f"bare:{body.get('external_id')}", "dedupe": body.get("phone"),
            "data": json.dumps(data), "touch": json.dumps(touch), "raw": raw.decode(),
            "now": datetime.now(timezone.utc),
        }).scalar()
    return jsonify({"id": sid, "status": "accepted"}), 202


@app.post("/lead")
def lead() -> Any:
    raw = request.get_data()
    body = json.loads(raw)
    with _REPS_LOCK:
        owner = next(REPS)
    with engine.begin() as conn:
        lead_id = conn.execute(LEAD, {
            "tenant": TENANT_ID, "name": body.get("name") or "", "phone": body.get("phone"),
            "source": body.get("source"), "owner": owner, "team": TEAM_ID, "raw": raw.decode(),
            "now": datetime.now(timezone.utc),
        }).scalar()
    return jsonify({"id": lead_id}), 201
