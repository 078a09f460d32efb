"""The intake line's batch path: what one batch writes, and the garbage collector around it.

On PostgreSQL the touches, stage history, ledger and events of a batch are
one statement (``core.bulk.write_together``); on SQLite one insert per
table. Both must give the same rows and tell each submission its own touch.
"""

from __future__ import annotations

import gc

from sqlalchemy import func, select

from pelago.core.models import OutboxEvent, OwnershipChange, StageChange, Touch

from .conftest import TenantHandle


def _phone(i: int) -> str:
    return f"1390077{i:04d}"


def test_a_mixed_batch_writes_every_row_and_tells_each_submission_its_touch(tenant: TenantHandle) -> None:
    from pelago.core.services.intake import Submission, ingest

    subs = [Submission({"phone": _phone(i), "name": f"k{i}"}, {"channel": "import"}, key=f"batch-test:{i}")
            for i in range(6)]
    subs += [Submission({"phone": _phone(10 + i), "name": f"p{i}"}, {"channel": "api"}) for i in range(4)]
    subs.append(Submission({"phone": _phone(0)}, key="batch-test:0"))  # the same key again: a replay
    subs.append(Submission({"phone": _phone(10)}))  # a duplicate of a plain one: merged
    with tenant.runtime.tenant_context(tenant.id) as ctx:
        out = ingest(ctx, subs)
    assert [o.status for o in out] == ["created"] * 10 + ["replayed", "merged"]
    assert out[10].touch_id == out[0].touch_id and out[10].lead_id == out[0].lead_id
    assert out[11].lead_id == out[6].lead_id and out[11].touch_id not in (None, out[6].touch_id)
    with tenant.runtime.tenant_session(tenant.id) as s:
        touches = {t.id: t for t in s.scalars(select(Touch))}
        assert len(touches) == 11
        for o, sub in zip(out[:10], subs[:10], strict=True):
            touch = touches[o.touch_id]  # type: ignore[index]
            assert (touch.lead_id, touch.idempotency_key, touch.merged) == (o.lead_id, sub.key, False)
        assert touches[out[11].touch_id].merged  # type: ignore[index]
        assert s.scalar(select(func.count()).select_from(StageChange)) == 10
        assert s.scalar(select(func.count()).select_from(OwnershipChange)) == 10
        events = {e.name: e.payload["items"] for e in s.scalars(select(OutboxEvent))}
    assert sorted(i["lead_id"] for i in events["lead_created"]) == sorted(o.lead_id for o in out[:10])
    assert len(events["lead_merged"]) == 1


def test_the_collector_is_on_again_after_a_batch_and_stays_off_if_it_was(tenant: TenantHandle) -> None:
    from pelago.core.services.intake import Submission, ingest

    assert gc.isenabled()
    with tenant.runtime.tenant_context(tenant.id) as ctx:
        ingest(ctx, [Submission({"phone": _phone(50)})])
    assert gc.isenabled()
    gc.disable()
    try:
        with tenant.runtime.tenant_context(tenant.id) as ctx:
            ingest(ctx, [Submission({"phone": _phone(51)})])
        assert not gc.isenabled()
    finally:
        gc.enable()
