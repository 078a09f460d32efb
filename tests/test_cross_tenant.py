"""Tenant isolation and object visibility, over every route of the spec.

The routes are discovered from the generated OpenAPI document, so a new route
with an id in its path is covered without touching this file: the core's
(an app like ``make_app()``'s) and the plugins' (an app deploying every good
plugin, with the plugins that have routes switched on for both tenants).

For each operation with an id in its path, tenant A owns the object and tenant
B's admin calls it, with every method the spec lists and a body the operation
accepts: the answer must be 404 (another tenant's object does not exist for
B; never 200, never 403) and nothing of A's may change (every row A has in the
database, compared before and after). A control call of the same request on
B's own object proves the body was valid, so the 404 is the isolation and not
a validation error.

Also: a rep sees only her own leads (and their deals, and her API keys),
operators name a tenant with ``X-Pelago-Tenant`` or get 403 on tenant routes,
and requests without a valid credential get 401.

The route sweeps (marker ``sweep``, several hundred cases) share their
tenants: each worker builds tenants A and B of each deployment once per
module (:class:`Worlds`), since a case only reads, or attempts what must be
refused, and proves it changed nothing by a checksum of every row A has in
the database (:func:`tenant_checksum`) before and after. What must change
something gets a tenant of its own, seeded for that case alone: the control
call of a write (on a fresh B), B's plugin switches, and the rep's own
objects (in a fresh A).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, MetaData, Table, select

from pelago.core.clock import FrozenClock
from pelago.core.host import PluginHost
from pelago.core.runtime import Runtime
from pelago.hostapp import Settings, create_app
from pelago.testing._tenants import new_operator_key
from pelago.testing.plugin import FROZEN_AT
from tests.conftest import ALL_GOOD_PLUGINS, TenantHandle, new_tenant
from tests.routes import (
    DEFAULT_PLUGINS,
    MULTIPART,
    NON_OBJECT_PARAMS,
    Operation,
    id_operations,
    load_spec,
    multipart_body,
    operations,
    path_operations,
    phone,
    seed,
    unique,
    valid_body,
)

#: the core app (like make_app()), and one deploying every good plugin
DEPLOYMENTS: dict[str, tuple[str, ...]] = {"core": DEFAULT_PLUGINS, "plugins": ALL_GOOD_PLUGINS}
SPECS = {name: load_spec(plugins) for name, plugins in DEPLOYMENTS.items()}


def _core_routes_only(spec: dict[str, Any]) -> dict[str, Any]:
    """The core world switches no plugin on, so a deployed plugin's routes are 404 there for
    everyone; they are covered in the "plugins" world, where they are on."""
    prefixes = tuple(f"/api/v1/{name}/" for name in ALL_GOOD_PLUGINS)
    return {**spec, "paths": {p: item for p, item in spec["paths"].items() if not p.startswith(prefixes)}}


SPECS["core"] = _core_routes_only(SPECS["core"])
CORE = SPECS["core"]
CORE_ROUTES = {(op.method, op.path) for op in operations(CORE)}
#: objects a rep only sees when they are hers
OWNER_SCOPED = ("lead_id", "deal_id", "key_id")
NOWHERE = 2**62  # an id no object has
NOWHERE_IDS = {**{k: [v] for k, v in NON_OBJECT_PARAMS.items()}, "assignee": [NOWHERE]}


def _cases(select: Callable[[dict[str, Any]], list[Operation]], *, everywhere: bool = False) -> list[Any]:
    """``(deployment, operation)`` params: the core's operations, then those only the plugins add
    (``everywhere``: every operation in every deployment)."""
    out = [pytest.param("core", op, id=op.label) for op in select(CORE)]
    for name, spec in SPECS.items():
        if name != "core":
            out += [pytest.param(name, op, id=f"{name}: {op.label}") for op in select(spec)
                    if everywhere or (op.method, op.path) not in CORE_ROUTES]
    return out


def _is_operator_route(op: Operation) -> bool:
    return op.path.startswith("/api/v1/tenants")


@dataclass
class World:
    """Tenants A and B of one app, each with objects of every kind (``tests/routes.seed``)."""

    app: Flask
    spec: dict[str, Any]
    a: TenantHandle
    b: TenantHandle
    a_ids: dict[str, list[Any]]
    b_ids: dict[str, list[Any]]
    #: what the sweeps reuse across cases: an operator's key, A's bad credentials
    cache: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ops(self) -> list[Operation]:
        return operations(self.spec)

    @property
    def engine(self) -> Engine:
        return self.app.extensions["pelago"].engine  # type: ignore[no-any-return]


def _switch_on_routed_plugins(app: Flask, t: TenantHandle) -> None:
    """Switch on, for ``t``, every deployed plugin that has routes (and what it requires)."""
    host = app.extensions["pelago"].host
    done: set[str] = set()

    def enable(name: str) -> None:
        if name in done:
            return
        for required in host.spec(name).requires:
            enable(required)
        r = t.put(f"/api/v1/plugins/{name}", json={"enabled": True})
        assert r.status_code == 200, (name, r.get_json())
        done.add(name)

    for name, spec in host.specs.items():
        if spec.blueprint is not None:
            enable(name)


def _seeded(app: Flask, deployment: str) -> tuple[TenantHandle, dict[str, list[Any]]]:
    """A new tenant of ``app`` with its deployment's plugins on and objects of every kind."""
    t = new_tenant(app)
    if deployment != "core":
        _switch_on_routed_plugins(app, t)
    return t, seed(t)


def _new_world(app: Flask, deployment: str) -> World:
    (a, a_ids), (b, b_ids) = _seeded(app, deployment), _seeded(app, deployment)
    return World(app, SPECS[deployment], a, b, a_ids, b_ids)


@pytest.fixture
def make_world(make_app: Callable[..., Flask]) -> Callable[[str], World]:
    """A world of the test's own (for the single tests, which change their tenants)."""
    def factory(deployment: str = "core") -> World:
        return _new_world(make_app(DEPLOYMENTS[deployment]), deployment)

    return factory


class Worlds:
    """The sweeps' worlds: one per deployment, built on first use and shared by the module's cases.

    Each deployment has an app of its own (a runtime on the run's database with
    a frozen clock of its own, never moved, as the ``clock`` fixture's).
    """

    def __init__(self, engine: Engine, db_url: str) -> None:
        self.engine, self.db_url = engine, db_url
        self._apps: dict[str, Flask] = {}
        self._worlds: dict[str, World] = {}

    def app(self, deployment: str) -> Flask:
        if deployment not in self._apps:
            runtime = Runtime(PluginHost(DEPLOYMENTS[deployment], strict=True), self.engine,
                              clock=FrozenClock(FROZEN_AT), queue_name=f"pelago-test-{uuid.uuid4().hex[:8]}")
            app = create_app(Settings(database_url=self.db_url), runtime=runtime)
            app.config["TESTING"] = True
            self._apps[deployment] = app
        return self._apps[deployment]

    def shared(self, deployment: str) -> World:
        """A and B of ``deployment``, shared: a case may change neither (it checks A, B is only read)."""
        if deployment not in self._worlds:
            self._worlds[deployment] = _new_world(self.app(deployment), deployment)
        return self._worlds[deployment]

    def fresh(self, deployment: str) -> tuple[TenantHandle, dict[str, list[Any]]]:
        """A new seeded tenant beside the shared ones, for a case that has to change its objects."""
        return _seeded(self.app(deployment), deployment)

    def operator_key(self, deployment: str) -> str:
        world = self.shared(deployment)
        if "operator_key" not in world.cache:
            world.cache["operator_key"] = new_operator_key(world.app)
        return world.cache["operator_key"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def worlds(engine: Engine, db_url: str) -> Iterator[Worlds]:
    yield Worlds(engine, db_url)


_TABLES: dict[int, list[Table]] = {}


def tenant_checksum(engine: Engine, tenant_id: int) -> dict[str, str]:
    """A digest per table of every row tenant ``tenant_id`` has in the database (a changed table is named).

    Stronger than reading A's objects through the API: it sees every column of
    every table, the plugins' included, whether a route shows it or not. Rows
    with another ``tenant_id`` are left out (B's control calls write B's own);
    ``core_tenant`` counts the tenant's own row; a table without tenants
    counts whole.
    """
    tables = _TABLES.get(id(engine))
    if tables is None:
        meta = MetaData()
        meta.reflect(engine)
        tables = _TABLES[id(engine)] = [t for _, t in sorted(meta.tables.items())]
    out = {}
    with engine.connect() as conn:
        for table in tables:
            stmt = select(table)
            if "tenant_id" in table.c:
                stmt = stmt.where(table.c.tenant_id == tenant_id)
            elif table.name == "core_tenant":
                stmt = stmt.where(table.c.id == tenant_id)
            digest = hashlib.sha256()
            for row in sorted(repr(tuple(row)) for row in conn.execute(stmt)):
                digest.update(row.encode() + b"\n")
            out[table.name] = digest.hexdigest()[:16]
    return out


@pytest.fixture
def world(make_world: Callable[[str], World]) -> World:
    return make_world("core")


def snapshot(world: World, ids: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """Everything tenant A's admin reads about its objects, by every GET route of the spec."""
    ids = ids or world.a_ids
    out: dict[str, Any] = {}
    for op in world.ops:
        if op.method != "GET" or _is_operator_route(op):
            continue
        url = op.url(**{p: ids[p][0] for p in op.params})
        r = world.a.get(url + ("?limit=200" if _is_page(world.spec, op) else ""))
        out[url] = (r.status_code, r.get_json())
    return out


def _is_page(spec: dict[str, Any], op: Operation) -> bool:
    """Whether the operation answers a page (``{"items": [...]}``)."""
    ok = spec["paths"][op.path][op.method.lower()]["responses"].get("200", {})
    body = ok.get("content", {}).get("application/json", {}).get("schema", {})
    while "$ref" in body:
        body = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    params = {p["name"] for p in spec["paths"][op.path][op.method.lower()].get("parameters", [])}
    # a page is paginated (limit and cursor): free-slots' computed suggestions (a limit, no cursor) are not
    return "items" in body.get("properties", {}) and {"limit", "cursor"} <= params


def request(caller: TenantHandle, op: Operation, ids: dict[str, list[Any]], body_ids: dict[str, list[Any]],
            spec: dict[str, Any], who: str = "admin", headers: dict[str, str] | None = None) -> Any:
    """``op`` by ``caller``'s ``who`` on the objects ``ids``, with a body valid for the owner of ``body_ids``."""
    url = op.url(**{p: ids[p][0] for p in op.params})
    body = valid_body(op, body_ids, spec)
    kw: dict[str, Any] = {"headers": headers or {}}
    if (op.method, op.path) in MULTIPART:
        kw.update(data=multipart_body(op, body_ids), content_type="multipart/form-data")
    elif body is not None:
        kw["json"] = body
    return caller.call(op.method, url, who, **kw)


# --- discovery ----------------------------------------------------------------------------


def test_discovered_id_routes() -> None:
    labels = {op.label for op in id_operations(CORE)}
    assert labels, "no route with an id in its path was found in the spec"
    for expected in (
        "GET /api/v1/leads/{lead_id}", "PATCH /api/v1/leads/{lead_id}", "POST /api/v1/leads/{lead_id}/assign",
        "POST /api/v1/leads/{lead_id}/stage", "POST /api/v1/leads/{lead_id}/activities",
        "GET /api/v1/leads/{lead_id}/activities", "GET /api/v1/leads/{lead_id}/history",
        "POST /api/v1/leads/{lead_id}/deals", "GET /api/v1/deals/{deal_id}", "POST /api/v1/deals/{deal_id}/refunds",
        "GET /api/v1/users/{user_id}", "PATCH /api/v1/users/{user_id}", "GET /api/v1/teams/{team_id}",
        "PATCH /api/v1/teams/{team_id}", "DELETE /api/v1/api-keys/{key_id}",
    ):
        assert expected in labels, expected
    # Every path parameter is an object id that tests/routes.seed creates, or a listed non-object.
    seeded = {"lead_id", "deal_id", "user_id", "team_id", "key_id", "channel_id", "submission_id", "import_id", "pool_id", "rule_id",
              "branch_id", "policy_id", "conversion_account_id", "conversion_rule_id", "conversion_id",
              "account_id", "class_id", "lesson_id", "trial_id", "feed_id", "token", "template_id", "sequence_id",
              "step_id", "enrolment_id", "period_id", "tenant", "provider"}
    for spec in SPECS.values():
        for op in path_operations(spec):
            for param in op.params:
                assert param in seeded or param in NON_OBJECT_PARAMS, (
                    f"{op.label}: path parameter {param!r}: teach tests/routes.seed to create one, "
                    "or list it in NON_OBJECT_PARAMS"
                )


# --- another tenant's objects --------------------------------------------------------------


@pytest.mark.sweep  # every route: scripts/test runs it once, in the PostgreSQL pass
@pytest.mark.parametrize(("deployment", "op"), _cases(id_operations))
def test_other_tenants_object_is_not_found(worlds: Worlds, deployment: str, op: Operation) -> None:
    w = worlds.shared(deployment)
    # a read's control call leaves B as it was; a write's changes B: it gets a B of its own
    b, b_ids = (w.b, w.b_ids) if op.method == "GET" else worlds.fresh(deployment)
    before = tenant_checksum(w.engine, w.a.id)

    r = request(b, op, w.a_ids, b_ids, w.spec)
    assert r.status_code == 404, (op.label, r.status_code, r.get_json())
    assert r.get_json()["code"] == 404
    # naming A's tenant is an operator's privilege: for B's admin the header changes nothing
    r = request(b, op, w.a_ids, b_ids, w.spec, headers={"X-Pelago-Tenant": w.a.slug})
    assert r.status_code == 404, (op.label, "with X-Pelago-Tenant", r.status_code, r.get_json())
    assert tenant_checksum(w.engine, w.a.id) == before, f"{op.label} by tenant B changed tenant A's data"

    control = request(b, op, b_ids, b_ids, w.spec)
    assert 200 <= control.status_code < 300, ("control call on B's own object", op.label, control.get_json())
    assert tenant_checksum(w.engine, w.a.id) == before


@pytest.mark.sweep  # every route: scripts/test runs it once, in the PostgreSQL pass
@pytest.mark.parametrize(("deployment", "op"), _cases(id_operations))
def test_other_tenants_object_is_not_found_for_every_role(worlds: Worlds, deployment: str, op: Operation) -> None:
    """B's manager and rep get what a missing object gets: 404, or the 403 of a role that may not act at all."""
    w = worlds.shared(deployment)
    before = tenant_checksum(w.engine, w.a.id), tenant_checksum(w.engine, w.b.id)
    for who in ("manager", "rep"):
        r = request(w.b, op, w.a_ids, w.b_ids, w.spec, who=who)
        nowhere = request(w.b, op, {p: [NOWHERE] for p in op.params} | NOWHERE_IDS, w.b_ids, w.spec, who=who)
        assert r.status_code in (403, 404), (who, op.label, r.status_code, r.get_json())
        assert r.status_code == nowhere.status_code, (who, op.label, "differs from a missing object")
    assert (tenant_checksum(w.engine, w.a.id), tenant_checksum(w.engine, w.b.id)) == before


def _pages(spec: dict[str, Any]) -> list[Operation]:
    return [op for op in operations(spec) if op.method == "GET" and not op.params and not _is_operator_route(op)
            and _is_page(spec, op)]


#: fields of listed items that name objects, and the kind of object
ITEM_REFS = {"lead_id": "lead_id", "deal_id": "deal_id", "user_id": "user_id", "owner_id": "user_id",
             "team_id": "team_id", "key_id": "key_id"}


def _identity(item: dict[str, Any]) -> Any:
    return item["id"] if "id" in item else json.dumps(item, sort_keys=True, default=str)


@pytest.mark.sweep  # every route: scripts/test runs it once, in the PostgreSQL pass
@pytest.mark.parametrize(("deployment", "op"), _cases(_pages, everywhere=True))
def test_lists_show_only_own_tenant(worlds: Worlds, deployment: str, op: Operation) -> None:
    w = worlds.shared(deployment)
    r = w.a.get(op.path + "?limit=200")
    assert r.status_code == 200, r.get_json()
    a_items = {_identity(item) for item in r.get_json()["items"]}
    a_objects = {kind: set(values) for kind, values in w.a_ids.items()}
    a_objects["user_id"] |= set(w.a.users.values())
    a_objects["team_id"].add(w.a.team_id)
    item_route = next((o for o in id_operations(w.spec) if o.method == "GET" and o.path.startswith(op.path + "/{")
                       and o.path.count("/") == op.path.count("/") + 1), None)
    item_kind = item_route.params[-1] if item_route else None

    r = w.b.get(op.path + "?limit=200")
    assert r.status_code == 200, r.get_json()
    items = r.get_json()["items"]
    assert not a_items & {_identity(item) for item in items}, f"{op.label} of B lists items of A's list"
    for item in items:
        refs = {**{f: k for f, k in ITEM_REFS.items() if f in item}, **({"id": item_kind} if item_kind else {})}
        for field, kind in refs.items():
            assert item[field] not in a_objects.get(kind, set()), f"{op.label} of B lists A's {kind} {item[field]}"
    if item_kind is not None:
        assert w.b_ids[item_kind][0] in {item["id"] for item in items}, f"{op.label} does not list B's own object"
    # filters naming another tenant's objects find nothing
    for q in w.spec["paths"][op.path]["get"].get("parameters", []):
        kind = ITEM_REFS.get(q["name"])
        if q["in"] == "query" and kind in w.a_ids:
            r = w.b.get(f"{op.path}?{q['name']}={w.a_ids[kind][0]}")
            assert r.status_code == 200, r.get_json()
            assert r.get_json()["items"] == [], f"{op.label}?{q['name']}=<A's> lists A's objects"


def test_other_tenants_ids_in_bodies_are_refused(world: World) -> None:
    """Ids of A's users and teams in B's request bodies do not reach A's objects."""
    a, b = world.a, world.b
    before = snapshot(world)
    b_lead = world.b_ids["lead_id"][0]
    r = b.post(f"/api/v1/leads/{b_lead}/assign", json={"user_id": a.users["rep"]})
    assert r.status_code == 422, r.get_json()
    r = b.post("/api/v1/leads", json={"name": "x", "phone": phone(), "owner_id": a.users["rep"]})
    assert r.status_code == 422, r.get_json()
    r = b.post("/api/v1/users", json={"email": f"{unique()}@x.test", "role": "rep", "team_id": a.team_id})
    assert r.status_code == 422, r.get_json()
    r = b.patch(f"/api/v1/users/{b.users['rep']}", json={"team_id": a.team_id})
    assert r.status_code == 422, r.get_json()
    r = b.post("/api/v1/api-keys", json={"user_id": a.users["admin"]})
    assert r.status_code == 404, r.get_json()
    assert snapshot(world) == before


def test_lead_of_b_never_points_at_a_team_of_a(world: World) -> None:
    """A's team id in B's new lead is refused like a team that does not exist (no existence oracle).

    Was a bug: with an owner without a team, B's lead was stored with A's team_id (201), and a
    team id that exists nowhere was a 409 from the foreign key.
    """
    a, b = world.a, world.b
    teamless = b.post("/api/v1/users", json={"email": f"{unique()}@x.test", "role": "rep"}).get_json()
    assert teamless["team_id"] is None
    before = snapshot(world)
    answers = []
    for team_id in (a.team_id, NOWHERE):
        for extra in ({}, {"owner_id": teamless["id"]}):
            r = b.post("/api/v1/leads", json={"name": "x", "phone": phone(), "team_id": team_id, **extra})
            assert r.status_code == 422, (team_id, extra, r.status_code, r.get_json())
            answers.append(sorted(r.get_json()["errors"]["json"]))
    assert answers[0] == answers[2] and answers[1] == answers[3], "A's team is told apart from no team"
    assert snapshot(world) == before


def test_uniqueness_is_per_tenant(world: World) -> None:
    """What A already has (a phone, an email, an idempotency key, a team name, a user's email) is new to B:
    B's submission creates B's own object, never merges into, replays or collides with A's (no 409 oracle)."""
    a, b = world.a, world.b
    key = unique("idem")
    a_lead = a.post("/api/v1/leads", json={"name": "A's", "phone": phone(), "email": f"{unique()}@x.test"},
                    headers={"Idempotency-Key": key}).get_json()
    a_email_only = a.lead(None, email=f"{unique()}@x.test", name="A's by email", external_id=f"{key}-ext")
    a_team = a.post("/api/v1/teams", json={"name": unique("shared")}).get_json()
    before = snapshot(world)

    for body, headers in (
        ({"name": "B's", "phone": a_lead["phone"]}, {}),
        ({"name": "B's", "email": a_lead["email"]}, {}),
        ({"name": "B's", "email": a_email_only["email"]}, {}),
        ({"name": "B's", "phone": phone()}, {"Idempotency-Key": key}),
        ({"name": "B's", "phone": phone(), "external_id": f"{key}-ext"}, {}),
    ):
        r = b.post("/api/v1/leads", json=body, headers=headers)
        assert r.status_code == 201, (body, headers, r.get_json())
        got = r.get_json()
        assert not got["merged"] and not got["replayed"], (body, headers, got)
        assert got["id"] not in (a_lead["id"], a_email_only["id"])
    r = b.post("/api/v1/teams", json={"name": a_team["name"]})
    assert r.status_code == 201, r.get_json()
    r = b.post("/api/v1/users", json={"email": f"admin@{a.slug}.test", "role": "rep"})
    assert r.status_code == 201, r.get_json()
    assert snapshot(world) == before


def _named_routes(spec: dict[str, Any]) -> list[Operation]:
    return [op for op in path_operations(spec) if not any(p.endswith("_id") for p in op.params)]


@pytest.mark.sweep  # every route: scripts/test runs it once, in the PostgreSQL pass
@pytest.mark.parametrize(("deployment", "op"), _cases(_named_routes))
def test_per_tenant_settings_stay_per_tenant(worlds: Worlds, deployment: str, op: Operation) -> None:
    """Routes naming a shared thing (a plugin): B acting on it changes nothing A has (B's own, fresh: it changes)."""
    w = worlds.shared(deployment)
    b, b_ids = worlds.fresh(deployment)
    before = tenant_checksum(w.engine, w.a.id)
    bodies = [valid_body(op, b_ids, w.spec)]
    if op.label == "PUT /api/v1/plugins/{name}":
        bodies = [{"enabled": True}, {"enabled": False}, {"settings": {}}]
    for body in bodies:
        r = b.call(op.method, op.url(**{p: b_ids[p][0] for p in op.params}),
                   **({"json": body} if body is not None else {}))
        assert 200 <= r.status_code < 300 or r.status_code == 409, (op.label, body, r.get_json())
    assert tenant_checksum(w.engine, w.a.id) == before


# --- reps see only their own -----------------------------------------------------------------


def _rep_scoped(spec: dict[str, Any]) -> list[Operation]:
    return [op for op in id_operations(spec) if any(p in OWNER_SCOPED for p in op.params)]


@pytest.mark.sweep  # every route: scripts/test runs it once, in the PostgreSQL pass
@pytest.mark.parametrize(("deployment", "op"), _cases(_rep_scoped))
def test_rep_does_not_see_another_reps_objects(worlds: Worlds, deployment: str, op: Operation) -> None:
    """rep of A on rep2's lead, deal and key: what a missing object gets (404; 403 where her role can't act).

    A is the case's own (the rep's control calls change her objects), with the shared world's spec.
    """
    a, a_ids = worlds.fresh(deployment)
    spec = SPECS[deployment]
    theirs = dict(a_ids)  # the seeded lead and deal are rep2's
    keys = a.get("/api/v1/api-keys?limit=200").get_json()["items"]
    theirs["key_id"] = [next(k["id"] for k in keys if k["user_id"] == a.users["rep2"])]
    own = dict(a_ids)  # the rep's own, for the control call
    lead = a.lead(phone(), who="rep", name="mine")
    assert lead["owner_id"] == a.users["rep"]
    own["lead_id"] = [lead["id"]]
    if "/api/v1/scheduling/students/{lead_id}/feed" in spec["paths"]:
        # her lead is a student too (enrolled in the seeded class), for scheduling's student routes
        r = a.post(f"/api/v1/scheduling/classes/{own['class_id'][0]}/students", json={"lead_id": lead["id"]})
        assert r.status_code == 201, r.get_json()
    deal = a.post(f"/api/v1/leads/{lead['id']}/deals", "rep", json={"amount": "50.00"})
    assert deal.status_code == 201, deal.get_json()
    own["deal_id"] = [deal.get_json()["id"]]
    own["key_id"] = [next(k["id"] for k in keys if k["user_id"] == a.users["rep"])]
    before = tenant_checksum(a.app.extensions["pelago"].engine, a.id)

    r = request(a, op, theirs, own, spec, who="rep")
    nowhere = request(a, op, {p: [NOWHERE] for p in op.params} | NOWHERE_IDS, own, spec, who="rep")
    assert r.status_code in (403, 404), (op.label, r.status_code, r.get_json())
    assert r.status_code == nowhere.status_code, (op.label, r.status_code, "differs from a missing object")
    assert tenant_checksum(a.app.extensions["pelago"].engine, a.id) == before, (
        f"{op.label} by a rep changed another rep's objects")
    if r.status_code == 404:
        control = request(a, op, own, own, spec, who="rep")
        assert 200 <= control.status_code < 300, ("control call on the rep's own object", op.label, control.get_json())


def test_rep_lists_only_her_own(world: World) -> None:
    a = world.a
    mine = a.lead(phone(), who="rep", name="mine")
    leads = {x["id"] for x in a.get("/api/v1/leads?limit=200", "rep").get_json()["items"]}
    assert mine["id"] in leads
    assert world.a_ids["lead_id"][0] not in leads
    deals = {x["id"] for x in a.get("/api/v1/deals?limit=200", "rep").get_json()["items"]}
    assert world.a_ids["deal_id"][0] not in deals
    keys = a.get("/api/v1/api-keys?limit=200", "rep").get_json()["items"]
    assert {k["user_id"] for k in keys} == {a.users["rep"]}


# --- operators ----------------------------------------------------------------------------


def _operator(key: str, tenant: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if tenant is not None:
        headers["X-Pelago-Tenant"] = tenant
    return headers


def _tenant_routes(spec: dict[str, Any]) -> list[Operation]:
    return [op for op in operations(spec) if not _is_operator_route(op)]


@pytest.mark.sweep  # every route: scripts/test runs it once, in the PostgreSQL pass
@pytest.mark.parametrize(("deployment", "op"), _cases(_tenant_routes))
def test_operator_without_tenant_header_is_refused(worlds: Worlds, deployment: str, op: Operation) -> None:
    w = worlds.shared(deployment)
    before = tenant_checksum(w.engine, w.a.id)
    r = request(w.a, op, w.a_ids, w.a_ids, w.spec, headers=_operator(worlds.operator_key(deployment)))
    expected = 404 if deployment != "core" else 403  # a plugin's routes: "not enabled for this tenant"
    assert r.status_code in (403, expected), (op.label, r.status_code, r.get_json())
    if deployment == "core":
        assert r.status_code == 403
    assert tenant_checksum(w.engine, w.a.id) == before


def test_operator_with_tenant_header_sees_that_tenant(world: World, operator_key: str) -> None:
    a, b = world.a, world.b
    client = world.app.test_client()
    reads = [op for op in id_operations(world.spec) if op.method == "GET"]
    assert reads
    for op in reads:
        url = op.url(**{p: world.a_ids[p][0] for p in op.params})
        mine = a.get(url)
        theirs = client.get(url, headers=_operator(operator_key, a.slug))
        assert theirs.status_code == 200 == mine.status_code, (url, theirs.get_json())
        assert theirs.get_json() == mine.get_json()
        other = client.get(url, headers=_operator(operator_key, b.slug))
        assert other.status_code == 404, (url, other.get_json())
    leads = client.get("/api/v1/leads?limit=200", headers=_operator(operator_key, a.slug)).get_json()["items"]
    assert world.a_ids["lead_id"][0] in {x["id"] for x in leads}
    assert world.b_ids["lead_id"][0] not in {x["id"] for x in leads}
    # and may act there
    lead_id = a.lead(phone())["id"]  # an open lead (the seeded one is won: it stays won)
    r = client.post(f"/api/v1/leads/{lead_id}/stage", json={"stage": "qualified"},
                    headers=_operator(operator_key, a.slug))
    assert r.status_code == 200 and r.get_json()["stage"] == "qualified", r.get_json()
    assert a.get(f"/api/v1/leads/{lead_id}").get_json()["stage"] == "qualified"
    # an unknown tenant is 404
    r = client.get("/api/v1/leads", headers=_operator(operator_key, "no-such-tenant"))
    assert r.status_code == 404, r.get_json()


def test_only_operators_name_a_tenant(world: World) -> None:
    """A tenant admin's X-Pelago-Tenant is ignored: the tenant always comes from the key."""
    a, b = world.a, world.b
    lead_a, lead_b = world.a_ids["lead_id"][0], world.b_ids["lead_id"][0]
    r = a.get(f"/api/v1/leads/{lead_b}", headers={"X-Pelago-Tenant": b.slug})
    assert r.status_code == 404, r.get_json()
    r = a.get(f"/api/v1/leads/{lead_a}", headers={"X-Pelago-Tenant": b.slug})
    assert r.status_code == 200, r.get_json()


def test_operator_routes_need_an_operator(world: World, operator_key: str) -> None:
    ops = [op for op in world.ops if _is_operator_route(op)]
    assert ops
    for op in ops:
        for who in ("admin", "manager", "rep"):
            r = request(world.a, op, world.a_ids, world.a_ids, world.spec, who=who)
            assert r.status_code == 403, (who, op.label, r.get_json())
        r = request(world.a, op, world.a_ids, world.a_ids, world.spec, headers=_operator(operator_key))
        assert 200 <= r.status_code < 300, (op.label, r.get_json())


# --- credentials ---------------------------------------------------------------------------


def _bad_credentials(t: TenantHandle) -> dict[str, dict[str, str]]:
    revoked = t.post("/api/v1/api-keys", json={"name": "to revoke"}).get_json()
    r = t.call("DELETE", f"/api/v1/api-keys/{revoked['id']}")
    assert r.status_code == 200 and r.get_json()["revoked_at"] is not None
    valid = t.keys["admin"]
    scheme, prefix, secret = valid.split("_", 2)  # pk_<12 hex>_<secret>
    tampered = f"{scheme}_{prefix}_{'A' if secret[0] != 'A' else 'B'}{secret[1:]}"
    return {
        "none": {},
        "empty bearer": {"Authorization": "Bearer "},
        "basic scheme": {"Authorization": f"Basic {valid}"},
        "no scheme": {"Authorization": valid},
        "malformed": {"Authorization": "Bearer not-a-key"},
        "unknown prefix": {"Authorization": f"Bearer {scheme}_{'0' * 12}_{secret}"},
        "truncated": {"Authorization": f"Bearer {tampered[:-1]}"},
        "wrong secret": {"Authorization": f"Bearer {tampered}"},
        "revoked": {"Authorization": f"Bearer {revoked['key']}"},
    }


@pytest.mark.sweep  # every route: scripts/test runs it once, in the PostgreSQL pass
@pytest.mark.parametrize(("deployment", "op"), _cases(operations))
def test_no_valid_credential_is_401(worlds: Worlds, deployment: str, op: Operation) -> None:
    w = worlds.shared(deployment)
    if "bad_credentials" not in w.cache:
        w.cache["bad_credentials"] = _bad_credentials(w.a)
    credentials = w.cache["bad_credentials"]
    before = tenant_checksum(w.engine, w.a.id)
    url = op.url(**{p: w.a_ids[p][0] for p in op.params})
    for label, headers in credentials.items():
        body = valid_body(op, w.a_ids, w.spec)
        r = w.app.test_client().open(url, method=op.method, headers=headers,
                                     **({"json": body} if body is not None else {}))
        assert r.status_code == 401, (label, op.label, r.status_code, r.get_json())
        assert r.get_json()["code"] == 401
    assert tenant_checksum(w.engine, w.a.id) == before


@pytest.mark.parametrize("header", [
    pytest.param("Bearer pk_0123456789ab_\x00", id="NUL in the secret"),
    pytest.param("Bearer pk_0123456789a\x00_secret", id="NUL in the prefix"),  # was BUG-13: a 500
    pytest.param("Bearer pk_0123456789a\u00e9_secret", id="non-ASCII prefix"),
])
def test_hostile_credential_is_401(world: World, header: str) -> None:
    r = world.app.test_client().get("/api/v1/leads", headers={"Authorization": header})
    assert r.status_code == 401, r.get_json()


@pytest.mark.parametrize("slug", [
    pytest.param("a\x00b", id="NUL"),  # was BUG-13: a 500 on PostgreSQL
    pytest.param("\u00fc" * 300, id="long non-ASCII"),
])
def test_operator_naming_a_hostile_tenant_gets_404(world: World, operator_key: str, slug: str) -> None:
    r = world.app.test_client().get("/api/v1/leads", headers=_operator(operator_key, slug))
    assert r.status_code == 404, r.get_json()


def test_deactivated_user_is_401(world: World) -> None:
    a = world.a
    assert a.get("/api/v1/leads", "rep2").status_code == 200
    r = a.patch(f"/api/v1/users/{a.users['rep2']}", json={"active": False})
    assert r.status_code == 200, r.get_json()
    r = a.get("/api/v1/leads", "rep2")
    assert r.status_code == 401, r.get_json()
