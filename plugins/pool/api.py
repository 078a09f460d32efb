"""``/api/v1/pool``: pools, their leads, claims, releases, distribution, moves, sweeps.

The host mounts this blueprint and answers 404 (naming the plugin) for a
tenant that has the pool off, so no view checks that itself. Actions on leads
take their ids in the body (``lead_ids``, one to a hundred) and answer what
was done and what was refused, with the reason; nothing done at all is a 409.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from pelago.plugin import (
    Blueprint,
    ImportDetail,
    Lead,
    NotFound,
    commit,
    current_context,
    decode_cursor,
    encode_cursor,
    paginate,
    requires,
    upload_import,
)

from . import pools, service
from . import schemas as s
from . import sweep as sweeping
from .models import Pool, Sweep

blp = Blueprint("pool", __name__, description="The public pool (公海): unworked leads go back, others claim them")


def _pool_out(c: Any, pool: Pool, info: pools.PoolInfo, members: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": pool.id, "name": pool.name, "description": pool.description, "team_id": pool.team_id,
        "is_default": pool.is_default, "members": members, "settings": info.settings,
        "can_admin": pools.can_admin(info, c.actor), "created_at": pool.created_at, "updated_at": pool.updated_at,
    }


def _show(c: Any, pool_id: int) -> dict[str, Any]:
    info, _ = pools.visible(c, pool_id)
    pool = c.session.get(Pool, pool_id)
    return _out_one(c, pool, info)


def _out_one(c: Any, pool: Pool, info: pools.PoolInfo) -> dict[str, Any]:
    return _pool_out(c, pool, info, pools.members(c, [pool.id])[pool.id])


@blp.route("/pools", methods=["GET"])
@blp.arguments(s.PoolPageArgs, location="query")
@blp.response(200, s.PoolPage)
def list_pools(args: dict[str, Any]) -> Any:
    """List the pools the caller may use, by id.

    Admins see every pool of the tenant; others the pools of their team and
    those they are a member of.
    """
    c = current_context()
    infos = pools.load(c, c.actor.user_id if c.actor else None)
    commit()  # the default pool may just have been created
    usable = sorted((i for i in infos.values() if pools.can_use(i, c.actor)), key=lambda i: i.id)
    if args.get("cursor"):
        after = decode_cursor(args["cursor"])
        usable = [i for i in usable if i.id > after]
    page = usable[:args["limit"]]
    rows = {p.id: p for p in c.session.scalars(select(Pool).where(Pool.id.in_([i.id for i in page])))}
    members = pools.members(c, [i.id for i in page])
    items = [_pool_out(c, rows[i.id], i, members[i.id]) for i in page]
    more = len(usable) > len(page)
    return {"items": items, "next_cursor": encode_cursor(page[-1].id) if more and page else None}


@blp.route("/pools", methods=["POST"])
@blp.arguments(s.PoolCreate)
@blp.response(201, s.Pool)
@requires("admin")
def create_pool(data: dict[str, Any]) -> Any:
    """Create a pool (admins), for a team (its leads are recycled into it) or for named members.

    `{name, team_id?, description?, members?: [{user_id, role}], settings?}`;
    a new pool has no recycle rule and no limit until its settings say so.
    """
    c = current_context()
    pool = pools.create(c, data)
    out = _show(c, pool.id)
    commit()
    return out


@blp.route("/pools/<int:pool_id>", methods=["GET"])
@blp.response(200, s.Pool)
def show_pool(pool_id: int) -> Any:
    """Read one pool the caller may use, with its settings and members.

    A pool the caller may not use, or another tenant's, is a 404.
    """
    c = current_context()
    out = _show(c, pool_id)
    commit()
    return out


@blp.route("/pools/<int:pool_id>", methods=["PATCH"])
@blp.arguments(s.PoolPatch)
@blp.response(200, s.Pool)
@requires("admin")
def patch_pool(data: dict[str, Any], pool_id: int) -> Any:
    """Rename, re-team, re-member a pool or change its settings (merged, each rule whole).

    Settings are range-checked (422 naming the field, nothing written); a
    `recycle` rule sent is replaced whole, the others are kept.
    """
    c = current_context()
    pools.visible(c, pool_id)
    pool = c.session.get(Pool, pool_id)
    if pool is None:  # pragma: no cover - visible() found it
        raise NotFound(f"pool {pool_id} not found")
    pools.update(c, pool, data)
    out = _show(c, pool_id)
    commit()
    return out


@blp.route("/pools/<int:pool_id>/leads", methods=["GET"])
@blp.arguments(s.PoolLeadFilter, location="query")
@blp.response(200, s.PoolLeadPage)
def pool_leads(args: dict[str, Any], pool_id: int) -> Any:
    """List the pool's leads, newest first; contacts masked for members until claimed.

    Filters: `source`, `stage`, `level`, `region`, `product`, `reason`,
    `claimable`, `entered_after`, `entered_before`. Past the pool's daily view
    limit a non-admin gets a 429.
    """
    c = current_context()
    cursor, limit = args.pop("cursor", None), args.pop("limit")
    page = service.list_leads(c, pool_id, args, cursor, limit)
    commit()  # the caller's view count
    return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("/pools/<int:pool_id>/leads", methods=["POST"])
@blp.arguments(s.PoolLeadCreate)
@blp.response(201, s.PoolLeadCreated, description="created in the pool")
@blp.alt_response(200, schema=s.PoolLeadCreated, description="merged into an existing lead, which stays where it is")
def create_lead(data: dict[str, Any], pool_id: int) -> Any:
    """Create a lead straight into the pool: no routing, no owner (pool admins).

    The same intake line as `POST /api/v1/leads` (dedupe, touch, ledger); a
    duplicate merges into the existing lead and moves nothing.
    """
    c = current_context()
    lead_id, merged = service.create_into(c, pool_id, data)
    commit()
    return _created(c, pool_id, lead_id, merged), 200 if merged else 201


@blp.route("/pools/<int:pool_id>/imports", methods=["POST"])
@blp.response(202, ImportDetail, description="stored and queued; its new leads enter this pool, unowned")
@blp.doc(requestBody=upload_import.doc)
def import_into(pool_id: int) -> Any:
    """Import a CSV straight into the pool (pool admins): the core's import, with routing off.

    Same form, encodings, mapping and report as `POST /api/v1/imports`; the
    new leads enter this pool, unowned, as each batch commits. `202`.
    """
    pools.administered(current_context(), pool_id)
    return upload_import(route=False, targets={"pool": {"pool_id": pool_id}})


def _created(c: Any, pool_id: int, lead_id: int, merged: bool) -> dict[str, Any]:
    from .models import PoolEntry

    lead = c.session.get(Lead, lead_id)
    entry = c.session.get(PoolEntry, lead_id)
    return {
        "id": lead.id, "pool_id": entry.pool_id if entry else pool_id, "name": lead.name, "phone": lead.phone,
        "email": lead.email, "contact_hidden": False, "source": lead.source, "region": lead.region,
        "product": lead.product, "level": (lead.attributes or {}).get("level"), "stage": lead.stage,
        "team_id": lead.team_id, "created_at": lead.created_at, "last_activity_at": lead.last_activity_at,
        "entered_at": entry.entered_at if entry else lead.created_at, "reason": entry.reason if entry else "merged",
        "rule": None, "from_user_id": None, "hidden_until": None, "claimable_from": None, "merged": merged,
    }


@blp.route("/claim", methods=["POST"])
@blp.arguments(s.PoolClaimArgs)
@blp.response(200, s.PoolOutcome)
def claim(data: dict[str, Any]) -> Any:
    """Claim pool leads; those someone else got first are refused with the reason (all refused: 409).

    `{lead_ids, pool_id?}`. One winner per lead, whatever the concurrency;
    the daily claim limit, cooldown, protection and hold cap apply. Answers
    `{done, refused: [{lead_id, reason}]}`.
    """
    c = current_context()
    out = service.claim(c, data["lead_ids"], data.get("pool_id"))
    commit()
    return out.as_dict()


@blp.route("/release", methods=["POST"])
@blp.arguments(s.PoolReleaseArgs)
@blp.response(200, s.PoolOutcome)
def release(data: dict[str, Any]) -> Any:
    """Give held leads back to a pool, with a reason (reps: their own; managers: any).

    `{lead_ids, reason, pool_id?}`: into `pool_id` (one the caller may use)
    or the lead's team's pool. Answers `{done, refused}`.
    """
    c = current_context()
    out = service.release(c, data["lead_ids"], data["reason"], data.get("pool_id"))
    commit()
    return out.as_dict()


@blp.route("/distribute", methods=["POST"])
@blp.arguments(s.PoolDistributeArgs)
@blp.response(200, s.PoolOutcome)
def distribute(data: dict[str, Any]) -> Any:
    """Give pool leads to a user (pool admins), subject to the hold cap.

    `{lead_ids, user_id, note?}`; protection and cooldown do not apply to
    admins. Answers `{done, refused}`.
    """
    c = current_context()
    out = service.distribute(c, data["lead_ids"], data["user_id"], data["note"])
    commit()
    return out.as_dict()


@blp.route("/move", methods=["POST"])
@blp.arguments(s.PoolMoveArgs)
@blp.response(200, s.PoolOutcome)
def move(data: dict[str, Any]) -> Any:
    """Move pool leads to another pool (admins of both).

    `{lead_ids, pool_id, note?}`: the leads enter the other pool now, and its
    protection starts. Answers `{done, refused}`.
    """
    c = current_context()
    out = service.move(c, data["lead_ids"], data["pool_id"], data["note"])
    commit()
    return out.as_dict()


@blp.route("/hide", methods=["POST"])
@blp.arguments(s.PoolHideArgs)
@blp.response(200, s.PoolOutcome)
def hide(data: dict[str, Any]) -> Any:
    """Hide pool leads from members until a time (pool admins); `until: null` shows them again.

    Hidden leads are unclaimable until then. Answers `{done, refused}`.
    """
    c = current_context()
    out = service.hide(c, data["lead_ids"], data["until"])
    commit()
    return out.as_dict()


@blp.route("/holdings", methods=["GET"])
@blp.arguments(s.PoolHoldingFilter, location="query")
@blp.response(200, s.PoolHoldingPage)
def holdings(args: dict[str, Any]) -> Any:
    """List held leads with the calendar days left before the sweep takes each back.

    Each with the recycle `rule`, `due_at`, `remaining_days` and `exempt`.
    Reps see their own; managers anyone's (`?user_id=`).
    """
    c = current_context()
    page = service.holdings(c, args.get("user_id"), args.get("cursor"), args["limit"])
    return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("/sweep/preview", methods=["GET"])
@blp.arguments(s.PoolPreviewArgs, location="query")
@blp.response(200, s.PoolPreviewPage)
@requires("manager")
def sweep_preview(args: dict[str, Any]) -> Any:
    """Show what the sweep would recycle now, under which rule (a dry run: nothing is written).

    Managers; `?pool_id=` for one pool. Paginated.
    """
    c = current_context()
    page = sweeping.preview(c, args.get("pool_id"), args.get("cursor"), args["limit"])
    return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("/sweeps", methods=["GET"])
@blp.arguments(s.PoolPageArgs, location="query")
@blp.response(200, s.PoolSweepPage)
@requires("manager")
def sweeps(args: dict[str, Any]) -> Any:
    """List past sweeps, newest first: what each released and reminded, by rule.

    Managers. Paginated with `limit` and `cursor`.
    """
    page = paginate(current_context().session, select(Sweep), Sweep.id, args.get("cursor"), args["limit"])
    return {"items": page.items, "next_cursor": page.next_cursor}
