"""Contract tests: Schemathesis over the generated OpenAPI spec.

Every operation of ``/api/openapi.json`` is called with generated input and
must never answer 5xx and must answer what the spec documents (status code,
content type, body schema):

* ``test_generated``: generated input and ids, as a tenant admin of a fresh
  tenant (unknown ids: mostly 404s);
* ``test_generated_existing_ids``: the same on a seeded tenant, every path
  parameter drawn from the objects it has, so handlers run past their
  lookups and lists have items;
* ``/api/v1/tenants`` with an operator key (its only role), and with a tenant
  admin's (403).

The schema is loaded once at import from an app configured like
``make_app()``'s (``tests/routes.load_spec``; no database involved);
``test_spec_matches_make_app`` proves it is the document the fixture app serves.

The end of the file pins, input by input, the server errors and spec
violations these runs (and a few hand-made hostile inputs) found: each was a
bug, and its test is the regression test of the fix.

``PELAGO_CONTRACT_EXAMPLES`` sets the number of generated examples per
operation (default 25; more for a deeper local run; ``scripts/test`` uses 5
in the SQLite pass when the PostgreSQL pass runs too).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ALL_GOOD_PLUGINS, TenantHandle, new_tenant
from tests.routes import (
    DEFAULT_PLUGINS,
    id_operations,
    load_spec,
    operations,
    phone,
    seed,
    spec_routes,
    valid_body,
)

SPEC: dict[str, Any] = load_spec(DEFAULT_PLUGINS)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_ID = 2**63 - 1  # ids are BIGINT

# Money is a decimal string (``format: decimal``): generate amounts a client would send, up to
# the column's limit and a little past it, besides the arbitrary strings negative cases bring.
schemathesis.openapi.format("decimal", st.one_of(
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1e17"), places=2, allow_nan=False).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
))



def _without_examples(node: Any) -> Any:
    """The spec without ``example(s)``: the tests draw their own data (and schemathesis will not
    combine a spec's examples with ``@schema.given``); the served document keeps them for readers."""
    if isinstance(node, dict):
        return {k: _without_examples(v) for k, v in node.items() if k not in ("example", "examples")}
    if isinstance(node, list):
        return [_without_examples(v) for v in node]
    return node


schema = schemathesis.openapi.from_dict(_without_examples(SPEC))
tenant_routes = schema.exclude(path_regex=r"^/api/v1/tenants")
operator_routes = schema.include(path_regex=r"^/api/v1/tenants")

SETTINGS = settings(
    max_examples=int(os.environ.get("PELAGO_CONTRACT_EXAMPLES", "25")),
    # Reproducible by default, so a build never fails on a draw it cannot repeat;
    # PELAGO_CONTRACT_RANDOM=1 explores new input (do that locally, often).
    derandomize=os.environ.get("PELAGO_CONTRACT_RANDOM") != "1",
    deadline=None,
    database=None,  # no example database: runs are independent
    suppress_health_check=list(HealthCheck),  # function-scoped fixtures, slow and filtered generation
)


def _call(app: Flask, case: schemathesis.Case, headers: dict[str, str]) -> Any:
    response = case.call(app=app, headers=headers)
    case.validate_response(response, checks=CHECKS)
    return response


# --- the spec itself -------------------------------------------------------------------


def test_spec_is_valid_openapi() -> None:
    """The document validates against the OpenAPI 3.0 meta-schema and every operation loads."""
    assert SPEC["openapi"].startswith("3.0")
    schema.validate()  # the official OpenAPI 3.0 JSON Schema, bundled with Schemathesis
    results = list(schema.get_all_operations())
    assert [str(r.err()) for r in results if not isinstance(r, Ok)] == []
    assert len(results) == len(spec_routes(SPEC))
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            if method in ("get", "put", "post", "delete", "patch"):
                assert any(code.startswith("2") for code in op["responses"]), f"{method} {path}: no 2xx"
                assert "default" in op["responses"], f"{method} {path}: errors undocumented"


def test_spec_matches_make_app(app: Flask) -> None:
    served = app.test_client().get("/api/openapi.json")
    assert served.status_code == 200
    assert served.get_json() == SPEC


@pytest.mark.parametrize("plugins", [DEFAULT_PLUGINS, ALL_GOOD_PLUGINS], ids=["default-plugins", "all-good-plugins"])
def test_every_api_route_is_in_the_spec(make_app: Callable[..., Flask], plugins: tuple[str, ...]) -> None:
    app = make_app(plugins)
    spec = app.test_client().get("/api/openapi.json").get_json()
    documented = spec_routes(spec)
    served: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1"):
            path = re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            served |= {(method, path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert served, "no /api/v1 routes at all"
    assert served - documented == set(), "routes missing from the spec"
    assert documented - served == set(), "the spec documents routes the app does not serve"


# --- pass 1: generated input, generated ids ---------------------------------------------


@pytest.fixture
def admin(app: Flask) -> TenantHandle:
    return new_tenant(app)


@tenant_routes.parametrize()
@SETTINGS
def test_generated(case: schemathesis.Case, app: Flask, admin: TenantHandle) -> None:
    _call(app, case, admin.headers("admin"))


@operator_routes.parametrize()
@SETTINGS
def test_generated_operator(case: schemathesis.Case, app: Flask, operator_key: str) -> None:
    _call(app, case, {"Authorization": f"Bearer {operator_key}"})


@operator_routes.parametrize()
@SETTINGS
def test_generated_tenant_admin_on_operator_routes(case: schemathesis.Case, app: Flask, admin: TenantHandle) -> None:
    response = _call(app, case, admin.headers("admin"))
    if case.method.upper() != case.operation.method.upper():
        return  # a coverage case probing an undocumented method (405, or 200 for OPTIONS)
    if "Authorization" in response.request.headers:
        assert response.status_code in (403, 422), response.text
    else:  # a negative case that drops the credential
        assert response.status_code == 401, response.text


# --- pass 2: ids drawn from existing objects ----------------------------------------------


@pytest.fixture
def seeded(app: Flask) -> dict[str, Any]:
    """A tenant with objects of every kind, and the ids its admin may act on without locking herself out."""
    t = new_tenant(app)
    ids = seed(t)
    more = seed(t)
    for name, values in more.items():
        ids[name] = list(dict.fromkeys(ids[name] + values))
    for i in range(2):  # plus unowned leads and one of the rep's own
        ids["lead_id"].append(t.lead(phone(), name=f"Seed {i}")["id"])
    ids["lead_id"].append(t.lead(phone(), who="rep", name="Rep's own")["id"])
    ids["name"] = list(app.extensions["pelago"].host.specs)
    assert t.users["admin"] not in ids["user_id"]  # a PATCH could deactivate her
    return {"tenant": t, "ids": ids}


@tenant_routes.parametrize()
@tenant_routes.given(data=st.data())
@SETTINGS
def test_generated_existing_ids(case: schemathesis.Case, data: st.DataObject, app: Flask,
                                seeded: dict[str, Any]) -> None:
    ids = seeded["ids"]
    params = dict(case.path_parameters or {})
    for name in params:
        assert name in ids, f"no seeded objects for path parameter {name!r}: extend tests/routes.seed"
        params[name] = data.draw(st.sampled_from(ids[name]), label=name)
    if params:
        case.path_parameters = params
    _call(app, case, seeded["tenant"].headers("admin"))


# --- regressions: each input here was a 5xx or a spec violation -------------------------


@pytest.fixture
def lead_id(admin: TenantHandle) -> int:
    return admin.lead(phone())["id"]  # type: ignore[no-any-return]


def _body_ids(t: TenantHandle) -> dict[str, list[Any]]:
    return {"assignee": [t.users["rep"]], "name": ["pool"]}


ID_OPS = id_operations(SPEC)


@pytest.mark.parametrize("value", [MAX_ID, MAX_ID + 1, 10**30])
@pytest.mark.parametrize("op", ID_OPS, ids=[op.label for op in ID_OPS])
def test_path_id_past_bigint_is_404(admin: TenantHandle, op: Any, value: int) -> None:
    """Was a 500 (SQLite OverflowError, PostgreSQL NumericValueOutOfRange), then a 405 on paths with two rules."""
    r = admin.call(op.method, op.url(**{p: value for p in op.params}), json=valid_body(op, _body_ids(admin), SPEC))
    assert r.status_code == 404, r.get_json()


def _cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"id": last_id}).encode()).decode().rstrip("=")


# The admin's tenant has every plugin off: a plugin's routes are 404 there whatever the cursor (each
# plugin tests its own cursors with itself on, e.g. plugins/pool/tests/test_pool.py).
PAGED = [op for op in operations(SPEC) if op.method == "GET"
         and not op.path.startswith(tuple(f"/api/v1/{name}/" for name in DEFAULT_PLUGINS))
         and any(p["name"] == "cursor" for p in SPEC["paths"][op.path]["get"].get("parameters", []))]


@pytest.mark.parametrize("last_id", [MAX_ID + 1, -(2**63) - 1, 10**30])
@pytest.mark.parametrize("op", PAGED, ids=[op.label for op in PAGED])
def test_cursor_past_bigint_is_422(admin: TenantHandle, operator_key: str, lead_id: int, op: Any,
                                   last_id: int) -> None:
    """Was a 500: a well-formed cursor holding an id past BIGINT reached the database."""
    headers = {"Authorization": f"Bearer {operator_key}"} if op.path.startswith("/api/v1/tenants") else {}
    ids = {"lead_id": lead_id}
    if "import_id" in op.params:  # an import's errors
        csv = io.BytesIO(f"name,phone\nx,{phone()}\n".encode())
        ids["import_id"] = admin.post("/api/v1/imports", data={"file": (csv, "x.csv")}).get_json()["id"]
    r = admin.get(op.url(**ids) + f"?cursor={_cursor(last_id)}", headers=headers)
    assert r.status_code == 422, r.get_json()


def test_paged_routes_found() -> None:
    assert {"GET /api/v1/leads", "GET /api/v1/deals", "GET /api/v1/tenants"} <= {op.label for op in PAGED}


MONEY_FIELDS = [("Deal", "amount"), ("Deal", "refunded"), ("Refund", "amount"), ("DealArgs", "amount"),
                ("RefundArgs", "amount")]


@pytest.mark.parametrize(("component", "field"), MONEY_FIELDS, ids=[f"{c}.{f}" for c, f in MONEY_FIELDS])
def test_money_is_documented_as_a_decimal_string(component: str, field: str) -> None:
    """Was {type: number}: the API answers "100.00" and refuses JSON numbers."""
    prop = SPEC["components"]["schemas"][component]["properties"][field]
    assert prop.get("type") == "string", prop


MONEY_READS = {
    "POST /api/v1/leads/{lead_id}/deals": lambda t, d: d["response"],
    "GET /api/v1/deals/{deal_id}": lambda t, d: t.get(f"/api/v1/deals/{d['deal']['id']}"),
    "GET /api/v1/deals": lambda t, d: t.get("/api/v1/deals"),
    "POST /api/v1/deals/{deal_id}/refunds": lambda t, d: t.post(
        f"/api/v1/deals/{d['deal']['id']}/refunds", json={"amount": "1.00", "reason": "x"}),
}


@pytest.fixture
def deal(admin: TenantHandle, lead_id: int) -> dict[str, Any]:
    r = admin.post(f"/api/v1/leads/{lead_id}/deals", json={"amount": "100.00"})
    assert r.status_code == 201, r.get_json()
    return {"deal": r.get_json(), "response": r}


@pytest.mark.parametrize("label", list(MONEY_READS))
def test_money_answers_match_the_spec(admin: TenantHandle, deal: dict[str, Any], label: str) -> None:
    response = MONEY_READS[label](admin, deal)
    assert 200 <= response.status_code < 300, response.get_json()
    method, path = label.split(" ")
    schema[path][method].validate_response(response)


AMOUNTS = [
    ("POST", "/api/v1/leads/{lead}/deals", {"amount": "1e20"}),
    ("POST", "/api/v1/leads/{lead}/deals", {"amount": "10000000000000000.00"}),
    ("POST", "/api/v1/leads/{lead}/deals", {"amount": "99999999999999999999.00"}),
    ("POST", "/api/v1/deals/{deal}/refunds", {"amount": "1e20", "reason": "x"}),
    ("POST", "/api/v1/deals/{deal}/refunds", {"amount": "10000000000000000.00", "reason": "x"}),
]


@pytest.mark.parametrize(("method", "url", "body"), AMOUNTS, ids=[f"{u.split('/')[-1]} {b['amount']}"
                                                                   for _, u, b in AMOUNTS])
def test_amount_past_the_column_is_422(admin: TenantHandle, lead_id: int, deal: dict[str, Any], method: str,
                                       url: str, body: dict[str, Any]) -> None:
    """Was a 500 from 10**16 on PostgreSQL (NUMERIC(18,2)) and from ~9.2e16 on SQLite (cents past BIGINT)."""
    r = admin.call(method, url.format(lead=lead_id, deal=deal["deal"]["id"]), json=body)
    assert r.status_code == 422, r.get_json()


def test_largest_amount_is_stored_on_every_database(admin: TenantHandle, lead_id: int) -> None:
    r = admin.post(f"/api/v1/leads/{lead_id}/deals", json={"amount": "9999999999999999.99"})
    assert r.status_code == 201, r.get_json()
    assert admin.get(f"/api/v1/deals/{r.get_json()['id']}").get_json()["amount"] == "9999999999999999.99"


NUL_INPUTS: dict[str, Callable[[TenantHandle, int], tuple[str, str, Any]]] = {
    "POST leads name": lambda t, lead: ("POST", "/api/v1/leads", {"name": "a\x00b", "phone": phone()}),
    "POST leads attributes": lambda t, lead: ("POST", "/api/v1/leads",
                                              {"name": "x", "phone": phone(), "attributes": {"k": "v\x00"}}),
    "POST leads utm_source": lambda t, lead: ("POST", "/api/v1/leads",
                                              {"name": "x", "phone": phone(), "utm_source": "\x00"}),
    "POST leads external_id": lambda t, lead: ("POST", "/api/v1/leads",
                                               {"name": "x", "phone": phone(), "external_id": "a\x00"}),
    "PATCH lead name": lambda t, lead: ("PATCH", f"/api/v1/leads/{lead}", {"name": "\x00"}),
    "PATCH lead attribute key": lambda t, lead: ("PATCH", f"/api/v1/leads/{lead}", {"attributes": {"\x00": None}}),
    "POST activity note": lambda t, lead: ("POST", f"/api/v1/leads/{lead}/activities",
                                           {"kind": "call", "note": "\x00"}),
    "POST stage lost_reason": lambda t, lead: ("POST", f"/api/v1/leads/{lead}/stage",
                                               {"stage": "lost", "lost_reason": "x\x00"}),
    "POST assign note": lambda t, lead: ("POST", f"/api/v1/leads/{lead}/assign",
                                         {"user_id": t.users["rep"], "note": "\x00"}),
    "POST deal product": lambda t, lead: ("POST", f"/api/v1/leads/{lead}/deals",
                                          {"amount": "1.00", "product": "\x00"}),
    "POST team name": lambda t, lead: ("POST", "/api/v1/teams", {"name": "\x00"}),
    "POST user name": lambda t, lead: ("POST", "/api/v1/users",
                                       {"email": "nul@example.com", "role": "rep", "name": "\x00"}),
    "POST api-key name": lambda t, lead: ("POST", "/api/v1/api-keys", {"name": "\x00"}),
    "GET leads ?q": lambda t, lead: ("GET", "/api/v1/leads?q=%00", None),
    "GET leads ?source": lambda t, lead: ("GET", "/api/v1/leads?source=%00", None),
    "GET deliveries ?plugin": lambda t, lead: ("GET", "/api/v1/deliveries?plugin=%00", None),
}


@pytest.mark.parametrize("label", list(NUL_INPUTS))
def test_nul_character_is_refused_or_stored(admin: TenantHandle, lead_id: int, label: str) -> None:
    """Was a 500 on PostgreSQL (text and jsonb cannot hold U+0000)."""
    method, url, body = NUL_INPUTS[label](admin, lead_id)
    r = admin.call(method, url, **({"json": body} if body is not None else {}))
    assert r.status_code in (200, 201, 422), r.get_json()


def test_nul_character_in_a_tenant_name_is_refused_or_stored(app: Flask, operator_key: str) -> None:
    r = app.test_client().post("/api/v1/tenants", json={"slug": f"nul-{os.urandom(4).hex()}", "name": "a\x00"},
                               headers={"Authorization": f"Bearer {operator_key}"})
    assert r.status_code in (201, 422), r.get_json()


@pytest.mark.parametrize("zone", ["Asia", "America", "Etc"])
def test_timezone_naming_a_folder_is_422(app: Flask, operator_key: str, zone: str) -> None:
    """Was a 500: ZoneInfo('Asia') raises IsADirectoryError."""
    r = app.test_client().post("/api/v1/tenants", json={"slug": f"tz-{os.urandom(4).hex()}", "timezone": zone},
                               headers={"Authorization": f"Bearer {operator_key}"})
    assert r.status_code == 422, r.get_json()


DATETIMES_OUT_OF_RANGE = {
    "activity occurred_at year 1, +14:00": ("POST", "/api/v1/leads/{lead}/activities",
                                             {"kind": "call", "occurred_at": "0001-01-01T00:00:00+14:00"}),
    "activity occurred_at 1078": ("POST", "/api/v1/leads/{lead}/activities",
                                  {"kind": "call", "occurred_at": "1078-08-03T14:55:50Z"}),
    "leads created_after year 1, +14:00": ("GET", "/api/v1/leads?created_after=0001-01-01T00:00:00%2B14:00", None),
    "leads created_before year 9999, -12:00": ("GET", "/api/v1/leads?created_before=9999-12-31T23:59:59-12:00",
                                               None),
}


@pytest.mark.parametrize("label", list(DATETIMES_OUT_OF_RANGE))
def test_datetime_out_of_range_is_422(admin: TenantHandle, lead_id: int, label: str) -> None:
    """Was a 500: astimezone(utc) overflowed past year 1 / 9999 (UtcDateTime.process_bind_param)."""
    method, url, body = DATETIMES_OUT_OF_RANGE[label]
    r = admin.call(method, url.format(lead=lead_id), **({"json": body} if body is not None else {}))
    assert r.status_code == 422, r.get_json()


OLD = "1900-06-01T00:00:00Z"  # Asia/Shanghai keeps local mean time (+08:05:43) until 1901
OLD_DATETIME_READS = {
    "POST /api/v1/leads/{lead_id}/activities": lambda t, lead: t.post(
        f"/api/v1/leads/{lead}/activities", json={"kind": "call", "occurred_at": OLD}),
    "GET /api/v1/leads/{lead_id}/activities": lambda t, lead: t.get(f"/api/v1/leads/{lead}/activities"),
    "GET /api/v1/leads/{lead_id}/history": lambda t, lead: t.get(f"/api/v1/leads/{lead}/history"),
    "GET /api/v1/leads/{lead_id}": lambda t, lead: t.get(f"/api/v1/leads/{lead}"),
}


@pytest.mark.parametrize("label", list(OLD_DATETIME_READS))
def test_old_datetimes_are_answered_in_rfc3339(admin: TenantHandle, lead_id: int, label: str) -> None:
    """Was '1078-08-03T23:01:33+08:05:43': the zone's LMT offset has seconds, which RFC 3339 cannot write."""
    if not label.startswith("POST"):
        r = admin.post(f"/api/v1/leads/{lead_id}/activities", json={"kind": "call", "occurred_at": OLD})
        assert r.status_code == 201, r.get_json()
    response = OLD_DATETIME_READS[label](admin, lead_id)
    assert response.status_code in (200, 201), response.get_json()
    method, path = label.split(" ")
    schema[path][method].validate_response(response)


def _strict_json(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE_JSON = {
    "attributes nested 100000 deep": '{"name": "x", "phone": "%s", "attributes": {"a": ' + _nested(100_000) + "}}",
    "attributes nested 900 deep": '{"name": "x", "phone": "%s", "attributes": {"a": ' + _nested(900) + "}}",
    "body nested 100000 deep": _nested(100_000),
    "attribute NaN": '{"name": "x", "phone": "%s", "attributes": {"a": NaN}}',
    "attribute -Infinity": '{"name": "x", "phone": "%s", "attributes": {"a": -Infinity}}',
    "attribute 1e400": '{"name": "x", "phone": "%s", "attributes": {"a": 1e400}}',
    "name lone surrogate": '{"name": "\\ud800", "phone": "%s"}',
    "attribute key lone surrogate": '{"name": "x", "phone": "%s", "attributes": {"\\udc00": 1}}',
    "not UTF-8": b'{"name": "\xff", "phone": "%s"}'.decode("latin-1"),
}


@pytest.mark.parametrize("label", list(HOSTILE_JSON))
def test_hostile_json_is_refused_or_stored_faithfully(admin: TenantHandle, label: str) -> None:
    """Were 500s (RecursionError; jsonb refusing NaN; UnicodeEncodeError) or, on SQLite, NaN in the answer."""
    raw = HOSTILE_JSON[label]
    data = (raw % phone() if "%s" in raw else raw).encode("latin-1" if label == "not UTF-8" else "utf-8")
    r = admin.post("/api/v1/leads", data=data, headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 201, 422), r.status_code
    _strict_json(r.get_data(as_text=True))


def test_nul_character_in_the_idempotency_key_is_422(admin: TenantHandle) -> None:
    """Was BUG-13: the key reached the touch lookup (psycopg DataError, 500) on PostgreSQL."""
    r = admin.post("/api/v1/leads", json={"name": "x", "phone": phone()}, headers={"Idempotency-Key": "a\x00"})
    assert r.status_code == 422, r.get_json()
    assert "Idempotency-Key" in r.get_json()["errors"]["headers"]


@pytest.mark.parametrize("amount", ["१२", "١٢", "12.5e3", " 12"])
def test_amounts_are_ascii_decimal_strings(admin: TenantHandle, amount: str) -> None:
    lead = admin.lead(phone())
    r = admin.post(f"/api/v1/leads/{lead['id']}/deals", json={"amount": amount})
    assert r.status_code == 422 and "amount" in r.get_json()["errors"]["json"]
