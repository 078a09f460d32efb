"""A plugin's routes, called with generated requests: never a 5xx, always what the spec says."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask


def check_routes(
    app: Flask,
    path_prefix: str,
    headers: Mapping[str, str],
    *,
    values: Mapping[str, Sequence[Any]] | None = None,
    max_examples: int = 10,
) -> list[str]:
    """Call every operation of ``app``'s ``/api/openapi.json`` under ``path_prefix`` with generated input.

    Each operation gets ``max_examples`` requests, valid and invalid
    (Schemathesis' positive and negative modes, through Hypothesis), sent
    with ``headers``; every response must not be a 5xx and must conform to
    the spec (documented status code, content type and body schema).
    ``values`` maps a parameter name to known values (ids of objects the test
    made): where a generated request has a path or query parameter or a
    top-level JSON body field of that name, half of the examples use one of
    them, so handlers run past their lookups. Generation is derandomized (a
    failure repeats on every run); ``PELAGO_CONTRACT_RANDOM=1`` explores new
    input. Returns the operations checked (``"GET /api/v1/x/{id}"``); raises
    ``AssertionError`` listing every failing operation with its smallest
    failing request.
    """
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.result import Ok
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    served = app.test_client().get("/api/openapi.json")
    assert served.status_code == 200, f"/api/openapi.json answered {served.status_code}"
    schema = schemathesis.openapi.from_dict(served.get_json()).include(path_regex="^" + re.escape(path_prefix))
    checked: list[str] = []
    failures: list[str] = []
    known = {name: list(choices) for name, choices in (values or {}).items() if choices}
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):  # an operation the spec cannot describe is a failure
            failures.append(f"an operation under {path_prefix} cannot be loaded: {result.err()}")
            continue
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        checked.append(label)
        strategy = st.one_of(*(operation.as_strategy(mode) for mode in schemathesis.GenerationMode))

        @given(case=strategy, data=st.data())
        @settings(
            max_examples=max_examples,
            derandomize=os.environ.get("PELAGO_CONTRACT_RANDOM") != "1",
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any, data: Any) -> None:
            _use_known(case, data, known)
            response = case.call(app=app, headers=dict(headers))
            case.validate_response(response, checks=checks)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, reported together below
            failures.append(f"{label}: {exc}")
    assert checked or failures, f"the spec has no operation under {path_prefix!r}"
    if failures:
        raise AssertionError(f"{len(failures)} of {len(checked)} operations failed:\n\n" + "\n\n".join(failures))
    return checked


def _use_known(case: Any, data: Any, known: Mapping[str, list[Any]]) -> None:
    """Replace, on a coin flip each, generated parameters and body fields by known values."""
    from hypothesis import strategies as st

    for name, choices in known.items():
        for part in ("path_parameters", "query"):
            given = getattr(case, part)
            if given and name in given and data.draw(st.booleans(), label=f"known {name}"):
                setattr(case, part, {**given, name: data.draw(st.sampled_from(choices), label=name)})
        if isinstance(case.body, dict) and name in case.body and data.draw(st.booleans(), label=f"known {name}"):
            case.body = {**case.body, name: data.draw(st.sampled_from(choices), label=name)}
