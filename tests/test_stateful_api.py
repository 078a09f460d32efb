"""Schemathesis, stateful: sequences of calls over the whole API, following links (issue 14, "Bad input").

tests/test_contract.py calls each operation on its own. Here Schemathesis
chains them: the OpenAPI document of the app with every bundled plugin
(``pool``, ``scheduling``, ``sms_nurture``, ``settlement``, each switched on
for the tenant), with the links Schemathesis infers from it (an id a response
gives is fed to the operations that take one: a created lead is read,
patched, claimed, given activities and deals ...). Sent in-process to the
Flask app (WSGI) with a tenant admin's key. No response may be a 5xx.

Bounded (``PELAGO_STATEFUL_EXAMPLES`` scenarios of at most
``PELAGO_STATEFUL_STEPS`` calls, derandomized), a few seconds on SQLite. The
PostgreSQL pass runs it too: it is the run where transaction and constraint
errors (a 409 that should not be a 500) show.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from pelago.core.ratelimit import MemoryLimiter
from tests.conftest import new_tenant
from tests.routes import DEFAULT_PLUGINS, load_spec

SPEC: dict[str, Any] = load_spec(DEFAULT_PLUGINS)
schema = schemathesis.openapi.from_dict(SPEC)
Workflow = schema.as_state_machine()

SETTINGS = settings(
    max_examples=int(os.environ.get("PELAGO_STATEFUL_EXAMPLES", "30")),
    stateful_step_count=int(os.environ.get("PELAGO_STATEFUL_STEPS", "8")),
    derandomize=os.environ.get("PELAGO_CONTRACT_RANDOM") != "1",
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_the_spec_has_links_to_follow() -> None:
    """Without links the run would be stateless: the inferred ones connect creators to their readers."""
    links = [(src, name) for src, name in _links(schema)]
    assert len(links) >= 10, links
    assert any(src == "POST /api/v1/leads" for src, _ in links), links


def _links(s: Any) -> list[tuple[str, str]]:
    Workflow  # noqa: B018 - building the state machine injects the inferred links
    out = []
    for path, item in s.raw_schema["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            for response in op.get("responses", {}).values():
                for name in (response.get("links") or {}) if isinstance(response, dict) else ():
                    out.append((f"{method.upper()} {path}", name))
    return out


def test_stateful_sequences_never_answer_5xx(app) -> None:
    def fresh_admin() -> dict[str, str]:
        t = new_tenant(app)
        for plugin in DEFAULT_PLUGINS:
            r = t.put(f"/api/v1/plugins/{plugin}", json={"enabled": True})
            assert r.status_code == 200, r.get_json()
        return t.headers("admin")

    class Sequences(Workflow):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            # A tenant and the webhooks' rate-limit counters per scenario: the same draws
            # meet the same state when Hypothesis replays or shrinks one (shared state
            # would change under it, and Hypothesis refuses a run whose draws change).
            app.extensions["pelago_limiter"] = MemoryLimiter(app.extensions["pelago"].clock)
            self.headers = fresh_admin()

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"app": app, "headers": self.headers}

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            case.validate_response(response, checks=[not_a_server_error])

    Sequences.run(settings=SETTINGS)
