"""The API's routes as the OpenAPI spec lists them, for the contract and isolation tests.

The spec is built from an app configured like ``make_app()``'s (same plugin
set) on an engine that is never connected: building the document touches no
database, so it can be loaded when a test module is imported and the
operations parametrized from it. ``test_spec_matches_make_app`` checks it is
the document the fixture app serves.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.conftest import TenantHandle

DEFAULT_PLUGINS = ("pool", "scheduling", "sms_nurture", "settlement", "conversions")
METHODS = ("get", "put", "post", "delete", "patch")


def load_spec(plugins: tuple[str, ...] = DEFAULT_PLUGINS) -> dict[str, Any]:
    from pelago.core.db import make_engine
    from pelago.core.host import PluginHost
    from pelago.core.runtime import Runtime
    from pelago.hostapp import Settings, create_app

    url = "sqlite://"  # never connected: the spec needs no database
    runtime = Runtime(PluginHost(plugins, strict=True), make_engine(url))
    app = create_app(Settings(database_url=url), runtime=runtime)
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200, response.data
    return response.get_json()  # type: ignore[no-any-return]


def spec_routes(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """``{(METHOD, path template)}`` of every operation in the spec."""
    return {(m.upper(), path) for path, item in spec["paths"].items() for m in item if m in METHODS}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    params: tuple[str, ...]  # the path parameters, in order
    has_body: bool

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def url(self, **values: Any) -> str:
        return re.sub(r"\{([a-z_]+)\}", lambda m: str(values[m.group(1)]), self.path)


def operations(spec: dict[str, Any]) -> list[Operation]:
    """Every operation of the spec that takes a credential.

    Public operations (``security: []``: the channel webhook, signed instead)
    answer no tenant's key and are proven by their own tests.
    """
    out = []
    for path, item in spec["paths"].items():
        params = tuple(re.findall(r"\{([a-z_]+)\}", path))
        for method, op in item.items():
            if method in METHODS and op.get("security") != []:
                out.append(Operation(method.upper(), path, params, "requestBody" in op))
    return sorted(out, key=lambda o: (o.path, o.method))


def path_operations(spec: dict[str, Any]) -> list[Operation]:
    """Every operation whose path takes a parameter (an object's id or name)."""
    return [op for op in operations(spec) if op.params]


def id_operations(spec: dict[str, Any]) -> list[Operation]:
    """Operations whose path takes an object id (``{…_id}``)."""
    return [op for op in path_operations(spec) if any(p.endswith("_id") for p in op.params)]


# --- objects and valid request bodies ---------------------------------------------------

#: path parameters that name something other than a tenant's object, and the values to use
NON_OBJECT_PARAMS: dict[str, str] = {"name": "pool"}  # /plugins/{name}: a deployed plugin


def unique(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def phone() -> str:
    return f"+86138{uuid.uuid4().int % 10**8:08d}"


def _ok(response: Any, *codes: int) -> Any:
    assert response.status_code in (codes or (200, 201)), (response.status_code, response.get_json())
    return response.get_json()


def seed(t: TenantHandle) -> dict[str, list[Any]]:
    """Objects of every kind in tenant ``t``, created through the API by its admin.

    Returns ids by the path parameter that names them (``lead_id``, ``deal_id``,
    ``user_id``, ``team_id``, ``key_id``, ``rule_id``), first the main object: a
    lead owned by ``rep2`` with an activity, a deal and a refund; a user; a team;
    an API key of that user; a routing rule; a webhook channel (``channel_id``,
    and its public ``key``); a CSV import (``import_id``); the default pool
    (``pool_id``) where the pool plugin is on. ``assignee`` is a
    user of ``t`` a lead can be given to.
    """
    ids: dict[str, list[Any]] = {}
    lead = _ok(t.post("/api/v1/leads", json={"name": "Seeded", "phone": phone(), "owner_id": t.users["rep2"]}))
    assert lead["owner_id"] == t.users["rep2"]
    ids["lead_id"] = [lead["id"]]
    _ok(t.post(f"/api/v1/leads/{lead['id']}/activities", json={"kind": "call", "note": "seeded"}), 201)
    deal = _ok(t.post(f"/api/v1/leads/{lead['id']}/deals", json={"amount": "100.00", "product": "seeded"}), 201)
    ids["deal_id"] = [deal["id"]]
    _ok(t.post(f"/api/v1/deals/{deal['id']}/refunds", json={"amount": "1.00", "reason": "seeded"}), 201)
    team = _ok(t.post("/api/v1/teams", json={"name": unique("team")}), 201)
    ids["team_id"] = [team["id"], t.team_id]
    user = _ok(t.post("/api/v1/users", json={"email": f"{unique('u')}@{t.slug}.test", "role": "rep",
                                             "team_id": team["id"]}), 201)
    ids["user_id"] = [user["id"], t.users["rep"], t.users["rep2"], t.users["manager"]]
    key = _ok(t.post("/api/v1/api-keys", json={"user_id": user["id"], "name": "seeded"}), 201)
    ids["key_id"] = [key["id"]]
    rule = _ok(t.post("/api/v1/routing/rules", json={"name": unique("rule"), "team_id": team["id"],
                                                     "match": {"source": ["seeded"]}}), 201)
    ids["rule_id"] = [rule["id"]]
    channel = _ok(t.post("/api/v1/channels", json={"name": unique("channel")}), 201)
    ids["channel_id"] = [channel["id"]]
    ids["key"] = [channel["key"]]  # the channel's public webhook key
    csv = f"name,phone\nSeeded,{phone()}\n".encode()
    imported = _ok(t.post("/api/v1/imports", data={"file": (io.BytesIO(csv), "seed.csv")}), 202)
    ids["import_id"] = [imported["id"]]
    pools = t.get("/api/v1/pool/pools")
    # The pool's default pool where the pool is on for t (elsewhere its routes are 404 whatever the id).
    ids["pool_id"] = [pools.get_json()["items"][0]["id"]] if pools.status_code == 200 else [1]
    ids.update(_seed_conversions(t))
    ids["assignee"] = [t.users["rep"]]
    for name, value in NON_OBJECT_PARAMS.items():
        ids[name] = [value]
    return ids


def _seed_conversions(t: TenantHandle) -> dict[str, list[Any]]:
    """Where ``conversions`` is on for ``t``: an account, a rule, and a conversion that failed.

    The account's endpoint is under ``.invalid`` (never resolves), and at most
    one attempt is made, so the lead's conversion ends ``failed`` at once: a
    user may decide about it (the decision route's control call). Elsewhere
    the plugin's routes are 404 whatever the id.
    """
    if t.get("/api/v1/conversions/rules").status_code != 200:
        return {"account_id": [1], "conversion_rule_id": [1], "conversion_id": [1]}
    _ok(t.put("/api/v1/plugins/conversions", json={"enabled": True, "settings": {"max_attempts": 1}}))
    account = _ok(t.post("/api/v1/conversions/accounts", json={
        "name": unique("acct"), "adapter": "generic", "url": "https://conversions.invalid/hook"}), 201)
    source = unique("src")
    rule = _ok(t.post("/api/v1/conversions/rules", json={
        "name": unique("conv"), "account_id": account["id"], "match": "source", "channel": source,
        "moment": "valid_lead", "event_type": "form"}), 201)
    _ok(t.post("/api/v1/leads", json={"name": "Seeded", "phone": phone(), "source": source, "click_id": "seeded"}))
    [conversion] = _ok(t.get("/api/v1/conversions/conversions", query_string={"rule_id": rule["id"]}))["items"]
    assert conversion["status"] == "failed", conversion
    return {"account_id": [account["id"]], "conversion_rule_id": [rule["id"]], "conversion_id": [conversion["id"]]}


MULTIPART = {("POST", "/api/v1/pool/pools/{pool_id}/imports")}


def multipart_body() -> dict[str, Any]:
    """A form with a small valid CSV, for the operations in :data:`MULTIPART`."""
    import io

    return {"file": (io.BytesIO(f"name,phone\nx,{phone()}\n".encode()), "x.csv")}


def valid_body(op: Operation, ids: dict[str, list[Any]], spec: dict[str, Any]) -> Any:
    """A request body the operation accepts, for the caller whose own objects are ``ids``.

    Known operations have a hand-written body; any other operation gets the
    smallest body its request schema allows (required fields only), which
    the tests prove valid by a control call on the caller's own objects.
    """
    known: dict[tuple[str, str], Callable[[], Any]] = {
        ("POST", "/api/v1/leads"): lambda: {"name": "x", "phone": phone()},
        ("PATCH", "/api/v1/leads/{lead_id}"): lambda: {"name": unique("renamed")},
        ("POST", "/api/v1/leads/{lead_id}/assign"): lambda: {"user_id": ids["assignee"][0], "note": "x"},
        # The seeded lead has a deal, so it is won, and a won lead stays won (the stage machine):
        # its one accepted stage is the one it is in (a 200 that changes nothing).
        ("POST", "/api/v1/leads/{lead_id}/stage"): lambda: {"stage": "won"},
        ("POST", "/api/v1/leads/{lead_id}/activities"): lambda: {"kind": "call", "note": "x"},
        ("POST", "/api/v1/leads/{lead_id}/deals"): lambda: {"amount": "10.00"},
        ("POST", "/api/v1/deals/{deal_id}/refunds"): lambda: {"amount": "1.00", "reason": "x"},
        ("POST", "/api/v1/users"): lambda: {"email": f"{unique('new')}@example.com", "role": "rep"},
        ("PATCH", "/api/v1/users/{user_id}"): lambda: {"name": unique("renamed")},
        ("POST", "/api/v1/teams"): lambda: {"name": unique("team")},
        ("PATCH", "/api/v1/teams/{team_id}"): lambda: {"name": unique("renamed")},
        ("POST", "/api/v1/api-keys"): lambda: {"name": "x"},
        ("PUT", "/api/v1/plugins/{name}"): lambda: {},
        ("POST", "/api/v1/tenants"): lambda: {"slug": unique("t")},
        ("POST", "/api/v1/routing/rules"): lambda: {"name": unique("rule"), "team_id": ids["team_id"][0]},
        ("PATCH", "/api/v1/routing/rules/{rule_id}"): lambda: {"priority": 7},
        ("POST", "/api/v1/routing/preview"): lambda: {"phone": phone()},
        ("POST", "/api/v1/channels"): lambda: {"name": unique("channel")},
        ("POST", "/api/v1/imports"): lambda: None,  # multipart, not JSON: its own tests upload files
        ("POST", "/api/v1/pool/pools/{pool_id}/imports"): lambda: None,  # multipart too (plugins/pool/tests/test_pool.py)
        ("POST", "/api/v1/pool/pools"): lambda: {"name": unique("pool")},
        ("POST", "/api/v1/pool/pools/{pool_id}/leads"): lambda: {"name": "x", "phone": phone()},
        ("POST", "/api/v1/conversions/accounts"): lambda: {
            "name": unique("acct"), "adapter": "generic", "url": "https://conversions.invalid/hook"},
        ("PATCH", "/api/v1/conversions/accounts/{account_id}"): lambda: {"name": unique("acct")},
        ("POST", "/api/v1/conversions/rules"): lambda: {
            "name": unique("conv"), "account_id": ids["account_id"][0], "channel": "c", "moment": "qualified",
            "event_type": "q"},
        ("PATCH", "/api/v1/conversions/rules/{conversion_rule_id}"): lambda: {"name": unique("conv")},
        ("POST", "/api/v1/conversions/conversions/{conversion_id}/decision"): lambda: {"decision": "accepted"},
        ("POST", "/api/v1/conversions/spend"): lambda: None,  # multipart (plugins/conversions/tests/test_funnel.py)
    }
    if not op.has_body:
        return None
    if (op.method, op.path) in known:
        return known[(op.method, op.path)]()
    body_schema = spec["paths"][op.path][op.method.lower()]["requestBody"]["content"]["application/json"]["schema"]
    return _minimal(spec, body_schema, ids)


def _minimal(spec: dict[str, Any], schema: dict[str, Any], ids: dict[str, list[Any]], name: str = "") -> Any:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _minimal(spec, props.get(k, {}), ids, k) for k in schema.get("required", [])}
    if kind == "integer":
        return ids[name][0] if name in ids else max(1, schema.get("minimum", 1))
    if kind == "number":
        return "1.00"
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    return "x" * max(1, schema.get("minLength", 1))
