"""The baseline of bench/intake_http.py: a bare Flask + SQLAlchemy webhook.

``POST /intake`` reads the JSON body and inserts it as one ``core_lead`` row
(SQLAlchemy Core, one transaction), answering 201 with the new id. No
signature, no mapping, no normalisation, no dedupe, no routing, no touch,
ledger or events: the least a webhook that stores a lead can do. Served by
gunicorn with the same settings as Pelago::

    BENCH_DATABASE_URL=… BENCH_TENANT_ID=… gunicorn bench._bare_app:app
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from flask import Flask, jsonify, request
from sqlalchemy import create_engine, insert

from pelago.core.models import Lead

app = Flask(__name__)
engine = create_engine(os.environ["BENCH_DATABASE_URL"], pool_size=10, max_overflow=20)
TENANT_ID = int(os.environ["BENCH_TENANT_ID"])
LEADS: Any = Lead.__table__


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
