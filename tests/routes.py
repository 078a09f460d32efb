"""The API's routes as the OpenAPI spec lists them, for the contract and isolation tests.

The spec is built from an app configured like ``make_app()``'s (same plugin
set) on an engine that is never connected: building the document touches no
database, so it can be loaded when a test module is imported and the
operations parametrized from it. ``test_spec_matches_make_app`` checks it is
the document the fixture app serves.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import io
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
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
    and its public ``key``) and a submission to it (``submission_id``); a CSV import (``import_id``); the default pool
    (``pool_id``) where the pool plugin is on; settlement's branches, a
    policy and a locked period (``branch_id``, ``policy_id``, ``period_id``)
    where it is on; an SMS template, sequence, step and enrolment where
    sms_nurture is on. ``assignee`` is a
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
    body = json.dumps({"name": "Seeded", "phone": phone()}).encode()
    signature = "sha256=" + hmac.new(channel["secret"].encode(), body, hashlib.sha256).hexdigest()
    submitted = t.app.test_client().post(f"/api/v1/intake/{channel['key']}", data=body, headers={
        "Content-Type": "application/json", "X-Pelago-Signature": signature})
    ids["submission_id"] = [_ok(submitted, 202)["id"]]
    csv = f"name,phone\nSeeded,{phone()}\n".encode()
    imported = _ok(t.post("/api/v1/imports", data={"file": (io.BytesIO(csv), "seed.csv")}), 202)
    ids["import_id"] = [imported["id"]]
    pools = t.get("/api/v1/pool/pools")
    # The pool's default pool where the pool is on for t (elsewhere its routes are 404 whatever the id).
    ids["pool_id"] = [pools.get_json()["items"][0]["id"]] if pools.status_code == 200 else [1]
    ids.update(_seed_scheduling(t, lead["id"], user["id"]))
    ids.update(_seed_conversions(t))
    ids["assignee"] = [t.users["rep"]]
    _seed_settlement(t, ids, team["id"], lead["id"])
    _seed_sms(t, ids, lead["id"])
    for name, value in NON_OBJECT_PARAMS.items():
        ids[name] = [value]
    return ids


def _seed_settlement(t: TenantHandle, ids: dict[str, list[Any]], team_id: int, lead_id: int) -> None:
    """Where settlement is on for ``t``: two branches, a policy, a credited deal and a locked period.

    Elsewhere its routes are 404 whatever the id.

    ``branch_id`` first names a branch with the seeded team and no policy, so every branch route
    succeeds on it (deleting it frees the team); the policy divides between the second branch and
    ``t``'s own team, which ``policy_entry`` names (branch id, team id) for new policies.
    """
    r = t.post("/api/v1/settlement/branches", json={"name": unique("branch"), "timezone": "Asia/Shanghai"})
    if r.status_code != 201:
        ids["branch_id"], ids["policy_id"], ids["policy_entry"], ids["period_id"] = [1], [1], [(1, 1)], [1]
        return
    first = r.get_json()["id"]
    _ok(t.put(f"/api/v1/settlement/branches/{first}/teams/{team_id}"))
    second = _ok(t.post("/api/v1/settlement/branches", json={"name": unique("branch"), "timezone": "Asia/Shanghai"}),
                 201)["id"]
    _ok(t.put(f"/api/v1/settlement/branches/{second}/teams/{t.team_id}"))
    policy = _ok(t.post("/api/v1/settlement/policies", json={"source": unique("src"), "entries": [
        {"branch_id": second, "team_id": t.team_id, "weight": 1}]}), 201)
    ids["branch_id"], ids["policy_id"], ids["policy_entry"] = [first, second], [policy["id"]], [(second, t.team_id)]
    # the seeded lead's team is in the second branch: a deal credited there (so its current period
    # exists), and last month's period locked
    _ok(t.post(f"/api/v1/leads/{lead_id}/deals", json={"amount": "10.00"}), 201)
    ids["period_id"] = [_locked_period(t, second)]


def _seed_sms(t: TenantHandle, ids: dict[str, list[Any]], lead_id: int) -> None:
    """Where sms_nurture is on for ``t``: a template, a sequence with a step, and the seeded lead enrolled.

    Its public webhooks name the tenant and a provider in their path (``tenant``, ``provider``).
    """
    ids["tenant"], ids["provider"] = [t.slug], ["log"]
    r = t.post("/api/v1/sms_nurture/templates", json={"name": unique("tpl"), "body": "{name}您好，回T退订"})
    if r.status_code != 201:
        for name in ("template_id", "sequence_id", "step_id", "enrolment_id"):
            ids[name] = [1]
        return
    template = r.get_json()["id"]
    sequence = _ok(t.post("/api/v1/sms_nurture/sequences", json={
        "name": unique("seq"), "steps": [{"template_id": template, "delay_minutes": 60}]}), 201)
    _ok(t.post(f"/api/v1/sms_nurture/sequences/{sequence['id']}/enrolments",
               json={"lead_ids": [lead_id], "pass": unique("pass")}))
    enrolments = _ok(t.get(f"/api/v1/sms_nurture/enrolments?lead_id={lead_id}"))["items"]
    ids["template_id"], ids["sequence_id"] = [template], [sequence["id"]]
    ids["step_id"] = [step["id"] for step in sequence["steps"]]
    ids["enrolment_id"] = [e["id"] for e in enrolments] or [1]


def _locked_period(t: TenantHandle, branch_id: int) -> int:
    """Last month's settlement period of the branch, empty and locked (the API locks only ended periods)."""
    from pelago.plugin import tenant_context
    from pelago.plugins.settlement import closing, ledger, periods

    with tenant_context(t.runtime, t.id) as ctx:
        now = periods.period_of(ctx.now(), ctx.tenant.tz)
        before = periods.previous(now, ctx.tenant.tz)
        period = closing.lock(ctx, ledger.period_row(ctx, branch_id, before.key), None)
        ctx.session.commit()
        return period.id


MULTIPART = {("POST", "/api/v1/pool/pools/{pool_id}/imports"),
             ("POST", "/api/v1/sms_nurture/sequences/{sequence_id}/enrolments/csv")}


_SEEDED_SLOTS: collections.defaultdict[int, Iterator[int]] = collections.defaultdict(itertools.count)


def _seed_scheduling(t: TenantHandle, lead_id: int, user_id: int) -> dict[str, list[Any]]:
    """Scheduling's objects where scheduling is on for ``t`` (elsewhere its routes are 404 whatever the id).

    ``user_id`` (the first seeded user, what ``{user_id}`` names) is made a teacher, for the teacher feed;
    a second class is where the seeded student is transferred to; ``spare_lead`` are leads in no class,
    one per enrolment (popped by the enrolment's known body).
    """
    base = "/api/v1/scheduling"
    if t.get(f"{base}/campuses").status_code != 200:
        return {**{k: [1] for k in ("account_id", "class_id", "lesson_id", "trial_id", "feed_id")},
                "token": ["not-a-feed-token"], "spare_lead": [1] * 8}
    campus = _ok(t.post(f"{base}/campuses", json={"name": unique("campus")}), 201)
    course = _ok(t.post(f"{base}/courses", json={"name": unique("course")}), 201)
    _ok(t.post(f"{base}/teachers", json={"user_id": t.users["rep"]}), 201)
    _ok(t.post(f"{base}/teachers", json={"user_id": user_id}), 201)
    package = _ok(t.post(f"{base}/packages", json={"course_id": course["id"], "name": unique("package"),
                                                   "hours": "10", "price": "100.00", "validity_days": 30}), 201)
    klass = _ok(t.post(f"{base}/classes", json={"name": unique("class"), "kind": "class", "campus_id": campus["id"],
                                                "course_id": course["id"], "teacher_id": t.users["rep"],
                                                "capacity": 10, "online": True}), 201)
    other = _ok(t.post(f"{base}/classes", json={"name": unique("class"), "kind": "class", "campus_id": campus["id"],
                                                "course_id": course["id"], "teacher_id": user_id,
                                                "capacity": 10, "online": True}), 201)
    account = _ok(t.post(f"{base}/accounts", json={"lead_id": lead_id, "package_id": package["id"]}), 201)
    _ok(t.post(f"{base}/classes/{klass['id']}/students", json={"lead_id": lead_id}), 201)
    # One teacher, so each seed of a tenant its own slot; the first starts within the hour, when a
    # roll-call may be taken (the attendance route's control call).
    starts = t.runtime.clock() + timedelta(minutes=10 + 40 * next(_SEEDED_SLOTS[t.id]))
    lesson = _ok(t.post(f"{base}/lessons", json={"class_id": klass["id"], "starts_at": starts.isoformat(),
                                                 "ends_at": (starts + timedelta(minutes=30)).isoformat()}), 201)
    trial = _ok(t.post(f"{base}/trials", json={"lead_id": ids_lead_for_trial(t), "lesson_id": lesson["id"]}), 201)
    feed = _ok(t.post(f"{base}/teachers/{t.users['rep']}/feed"), 201)
    spare = [ids_lead_for_trial(t) for _ in range(8)]
    return {"account_id": [account["id"]], "class_id": [klass["id"], other["id"]], "lesson_id": [lesson["id"]],
            "trial_id": [trial["id"]], "feed_id": [feed["id"]], "token": [feed["token"]], "spare_lead": spare}


def ids_lead_for_trial(t: TenantHandle) -> int:
    return int(_ok(t.post("/api/v1/leads", json={"name": "Trial", "phone": phone()}))["id"])


def _seed_conversions(t: TenantHandle) -> dict[str, list[Any]]:
    """Where ``conversions`` is on for ``t``: an account, a rule, and a conversion that failed.

    The account's endpoint is under ``.invalid`` (never resolves), and at most
    one attempt is made, so the lead's conversion ends ``failed`` at once: a
    user may decide about it (the decision route's control call). Elsewhere
    the plugin's routes are 404 whatever the id.
    """
    if t.get("/api/v1/conversions/rules").status_code != 200:
        return {"conversion_account_id": [1], "conversion_rule_id": [1], "conversion_id": [1]}
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
    return {"conversion_account_id": [account["id"]], "conversion_rule_id": [rule["id"]], "conversion_id": [conversion["id"]]}


def multipart_body(op: Operation | None = None, ids: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """A form with a small valid CSV, for the operations in :data:`MULTIPART` (for the caller owning ``ids``)."""
    if op is not None and ids is not None and op.path.endswith("/enrolments/csv"):
        # sms_nurture enrols leads by id; once per (lead, sequence, pass): a new pass each call
        csv = f"lead_id\n{ids['lead_id'][0]}\n".encode()
        return {"file": (io.BytesIO(csv), "enrol.csv"), "pass": unique("pass")}
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
        ("POST", "/api/v1/sms_nurture/sequences/{sequence_id}/enrolments/csv"): lambda: None,  # multipart
        ("POST", "/api/v1/scheduling/classes/{class_id}/students"): lambda: {
            "lead_id": _spare_lead(ids)},
        ("POST", "/api/v1/scheduling/classes/{class_id}/transfer"): lambda: {
            "lead_id": ids.get("lead_id", [1])[0], "to_class_id": ids.get("class_id", [1])[-1]},
        ("POST", "/api/v1/scheduling/lessons/{lesson_id}/attendance"): lambda: {
            "marks": [{"lead_id": ids.get("lead_id", [1])[0], "status": "present"}]},
        ("POST", "/api/v1/sms_nurture/sequences/{sequence_id}/enrolments"): lambda: {
            "lead_ids": [ids.get("lead_id", [1])[0]], "pass": unique("pass")},
        ("POST", "/api/v1/pool/pools"): lambda: {"name": unique("pool")},
        ("POST", "/api/v1/pool/pools/{pool_id}/leads"): lambda: {"name": "x", "phone": phone()},
        ("POST", "/api/v1/settlement/deals/{deal_id}/credits"): lambda: {
            "reason": "x", "lines": [{"branch_id": ids.get("branch_id", [1])[0], "percent": "100"}]},
        ("POST", "/api/v1/settlement/branches"): lambda: {"name": unique("branch"), "timezone": "Asia/Shanghai"},
        ("PATCH", "/api/v1/settlement/branches/{branch_id}"): lambda: {"name": unique("renamed")},
        ("POST", "/api/v1/settlement/policies"): lambda: {"source": unique("src"), "entries": [
            {"branch_id": branch, "team_id": team, "weight": 1} for branch, team in ids["policy_entry"][:1]]},
        ("POST", "/api/v1/conversions/accounts"): lambda: {
            "name": unique("acct"), "adapter": "generic", "url": "https://conversions.invalid/hook"},
        ("PATCH", "/api/v1/conversions/accounts/{conversion_account_id}"): lambda: {"name": unique("acct")},
        ("POST", "/api/v1/conversions/rules"): lambda: {
            "name": unique("conv"), "account_id": ids["conversion_account_id"][0], "channel": "c", "moment": "qualified",
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


def _spare_lead(ids: dict[str, list[Any]]) -> Any:
    """A lead in no class (one per enrolment, from the seed's ``spare_lead``), else the main lead."""
    spare = ids.get("spare_lead")
    if not spare:
        return ids.get("lead_id", [1])[0]
    return spare.pop() if len(spare) > 1 else spare[0]


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
