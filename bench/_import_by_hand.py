"""The same-writes baseline of bench/intake_import.py: what the intake line stores, by hand.

For each batch of already normalised leads, the minimal SQL that makes the
pipeline's writes, set-based, in one transaction: each lead with its owner
(round robin over the team's reps, decided in Python; the pointer saved on
the team row), its touch (the raw row, the idempotency key, UTM), its stage
history row, its ledger row (with the explanation the pipeline writes) and
the batch's two outbox events, ``lead_created`` and ``lead_assigned``, with
one item per lead. No lookups, no dedupe, no hooks, no ORM.

- PostgreSQL: one statement, data-modifying CTEs over
  ``json_to_recordset`` (the batch as one JSON parameter), lead ids drawn
  from the sequence; the event items are built by the database.
- SQLite: one ``executemany`` per table on the driver, lead ids after the
  highest (the transaction holds the write lock from its first statement),
  JSON made by ``json.dumps``.

No plugin subscribes to the events in the benchmark's runtime, so neither
side writes deliveries (bench/intake_import.py checks that).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import text

from bench.common import BenchTenant, cn_e164, raw_leads

STRATEGY = "round_robin"
TEAM_REASON = {"rule": "default_team", "reason": "the tenant's default intake team"}

PG_BATCH = text("""
WITH src AS MATERIALIZED (
  SELECT nextval('core_lead_id_seq') AS id, u.*
  FROM json_to_recordset(CAST(:rows AS json)) AS u(
    name text, phone text, email text, source text, owner bigint, prev bigint, key text, raw jsonb,
    utm_source text, utm_medium text, utm_campaign text)
), lead AS (
  INSERT INTO core_lead (id, tenant_id, name, phone, email, source, stage, is_customer, owner_id, team_id, locked,
                         attributes, created_at, updated_at, assigned_at, stage_changed_at, version)
  SELECT id, :tenant, name, phone, email, source, 'new', false, owner, :team, false, '{}', :now, :now, :now, :now, 1
  FROM src
), touch AS (
  INSERT INTO core_touch (tenant_id, lead_id, channel, idempotency_key, source, utm_source, utm_medium, utm_campaign,
                          merged, raw, received_at)
  SELECT :tenant, id, 'import', key, source, utm_source, utm_medium, utm_campaign, false, raw, :now FROM src
), stage AS (
  INSERT INTO core_stage_change (tenant_id, lead_id, new, at) SELECT :tenant, id, 'new', :now FROM src
), ledger AS (
  INSERT INTO core_ownership_change (tenant_id, lead_id, to_user_id, to_team_id, reason, rule, note, detail, at)
  SELECT :tenant, id, owner, :team, 'created', 'round_robin', '', jsonb_build_object(
    'team', CAST(:team_detail AS jsonb), 'strategy', 'round_robin', 'candidates', CAST(:candidates AS jsonb),
    'excluded', '{}'::jsonb, 'owner', jsonb_build_object(
      'user_id', owner, 'rule', 'round_robin', 'reason',
      CASE WHEN prev IS NULL THEN 'round robin: first in the team' ELSE 'round robin: next after user ' || prev END)),
    :now
  FROM src
), pointer AS (
  UPDATE core_team SET rr_pointer = :pointer WHERE tenant_id = :tenant AND id = :team
)
INSERT INTO core_event (tenant_id, name, payload, created_at)
SELECT :tenant, 'lead_created', jsonb_build_object('items', jsonb_agg(jsonb_build_object(
  'lead_id', id, 'name', name, 'phone', phone, 'email', email, 'source', source, 'stage', 'new', 'owner_id', owner,
  'team_id', :team, 'is_customer', false, 'created_at', CAST(:stamp AS text)) ORDER BY id)), :now
FROM src
UNION ALL
SELECT :tenant, 'lead_assigned', jsonb_build_object('items', jsonb_agg(jsonb_build_object(
  'lead_id', id, 'from_user_id', NULL, 'to_user_id', owner, 'team_id', :team, 'reason', 'created',
  'rule', 'round_robin') ORDER BY id)), :now
FROM src
""")


class ByHand:
    """One tenant's batches, written by hand; :meth:`write` is what the benchmark times."""

    def __init__(self, runtime: Any, tenant: BenchTenant) -> None:
        self.engine = runtime.engine
        self.tenant = tenant
        self.reps = sorted(tenant.rep_ids)
        self.next = 0  # index in reps of the next owner
        self.pointer: int | None = None  # the last owner given (the team's rr_pointer)
        self.postgres = self.engine.dialect.name == "postgresql"
        self.team_detail = {"team_id": tenant.team_id, **TEAM_REASON}

    def rows(self, n: int) -> Iterator[dict[str, Any]]:
        """The leads as already normalised rows with their touch data (the batch's input, untimed)."""
        sha = uuid.uuid4().hex * 2
        for i, row in enumerate(raw_leads(n)):
            email = row.get("email")
            yield {
                "name": row["name"], "phone": cn_e164(i), "email": email.lower() if email else None,
                "source": row["source"], "key": f"import:{sha}:{i + 1}", "raw": row,
                "utm_source": row.get("utm_source"), "utm_medium": row.get("utm_medium"),
                "utm_campaign": row.get("utm_campaign"),
            }

    def _owners(self, n: int) -> list[tuple[int, int | None]]:
        """Round robin: ``(owner, previous owner)`` for each of ``n`` leads."""
        out = []
        for _ in range(n):
            owner = self.reps[self.next]
            out.append((owner, self.pointer))
            self.pointer, self.next = owner, (self.next + 1) % len(self.reps)
        return out

    def write(self, batch: list[dict[str, Any]], now: Any) -> None:
        """Store one batch in one transaction."""
        owners = self._owners(len(batch))
        if self.postgres:
            self._pg(batch, owners, now)
        else:
            self._sqlite(batch, owners, now)

    def _pg(self, batch: list[dict[str, Any]], owners: list[tuple[int, int | None]], now: Any) -> None:
        rows = [{**r, "owner": owner, "prev": prev} for r, (owner, prev) in zip(batch, owners, strict=True)]
        with self.engine.begin() as conn:
            conn.execute(PG_BATCH, {
                "rows": json.dumps(rows), "tenant": self.tenant.id, "team": self.tenant.team_id, "now": now,
                "stamp": now.isoformat(), "team_detail": json.dumps(self.team_detail),
                "candidates": json.dumps(self.reps), "pointer": self.pointer,
            })

    def _sqlite(self, batch: list[dict[str, Any]], owners: list[tuple[int, int | None]], now: Any) -> None:
        from pelago.core.models import Lead

        dialect = self.engine.dialect
        stamp = Lead.__table__.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
        at = stamp(now) if stamp is not None else now
        tenant, team = self.tenant.id, self.tenant.team_id
        candidates = self.reps
        with self.engine.begin() as conn:
            top = conn.exec_driver_sql("SELECT max(id) FROM core_lead").scalar() or 0
            ids = range(top + 1, top + len(batch) + 1)
            conn.exec_driver_sql(
                "INSERT INTO core_lead (id, tenant_id, name, phone, email, source, stage, is_customer, owner_id, team_id,"
                " locked, attributes, created_at, updated_at, assigned_at, stage_changed_at, version)"
                " VALUES (?, ?, ?, ?, ?, ?, 'new', 0, ?, ?, 0, '{}', ?, ?, ?, ?, 1)",
                [(lid, tenant, r["name"], r["phone"], r["email"], r["source"], owner, team, at, at, at, at)
                 for lid, r, (owner, _) in zip(ids, batch, owners, strict=True)],
            )
            conn.exec_driver_sql(
                "INSERT INTO core_touch (tenant_id, lead_id, channel, idempotency_key, source, utm_source, utm_medium,"
                " utm_campaign, merged, raw, received_at) VALUES (?, ?, 'import', ?, ?, ?, ?, ?, 0, ?, ?)",
                [(tenant, lid, r["key"], r["source"], r["utm_source"], r["utm_medium"], r["utm_campaign"],
                  json.dumps(r["raw"]), at) for lid, r in zip(ids, batch, strict=True)],
            )
            conn.exec_driver_sql(
                "INSERT INTO core_stage_change (tenant_id, lead_id, new, at) VALUES (?, ?, 'new', ?)",
                [(tenant, lid, at) for lid in ids],
            )
            conn.exec_driver_sql(
                "INSERT INTO core_ownership_change (tenant_id, lead_id, to_user_id, to_team_id, reason, rule, note,"
                " detail, at) VALUES (?, ?, ?, ?, 'created', 'round_robin', '', ?, ?)",
                [(tenant, lid, owner, team, json.dumps({
                    "team": self.team_detail, "strategy": STRATEGY, "candidates": candidates, "excluded": {},
                    "owner": {"user_id": owner, "rule": STRATEGY, "reason": (
                        "round robin: first in the team" if prev is None else f"round robin: next after user {prev}"
                    )},
                }), at) for lid, (owner, prev) in zip(ids, owners, strict=True)],
            )
            conn.exec_driver_sql("UPDATE core_team SET rr_pointer = ? WHERE tenant_id = ? AND id = ?",
                                 (self.pointer, tenant, team))
            created = now.isoformat()
            conn.exec_driver_sql(
                "INSERT INTO core_event (tenant_id, name, payload, created_at) VALUES (?, ?, ?, ?)",
                [(tenant, "lead_created", json.dumps({"items": [
                    {"lead_id": lid, "name": r["name"], "phone": r["phone"], "email": r["email"],
                     "source": r["source"], "stage": "new", "owner_id": owner, "team_id": team,
                     "is_customer": False, "created_at": created}
                    for lid, r, (owner, _) in zip(ids, batch, owners, strict=True)
                ]}), at), (tenant, "lead_assigned", json.dumps({"items": [
                    {"lead_id": lid, "from_user_id": None, "to_user_id": owner, "team_id": team,
                     "reason": "created", "rule": STRATEGY}
                    for lid, (owner, _) in zip(ids, owners, strict=True)
                ]}), at)],
            )
