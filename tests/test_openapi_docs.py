"""Every operation of the OpenAPI document says what it does: a summary, a description and tags.

flask-smorest takes the summary from the first line of the view's docstring
and the description from the rest, so Swagger UI shows more than bare
paths. The document is built with every bundled plugin and the example
plugin deployed, so plugins' routes are held to the same rule.
"""

from __future__ import annotations

from tests.routes import DEFAULT_PLUGINS, METHODS, load_spec

PLUGINS = (*DEFAULT_PLUGINS, "lead_score")


def test_every_operation_has_a_summary_a_description_and_tags():
    spec = load_spec(PLUGINS)
    missing = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            lacks = [k for k in ("summary", "description", "tags") if not op.get(k)]
            if op.get("summary") and op.get("description") and op["summary"].strip() == op["description"].strip():
                lacks.append("a description other than the summary")
            if lacks:
                missing.append(f"{method.upper()} {path}: no {', '.join(lacks)}")
    assert not missing, "give each view a docstring (first line: summary; then a paragraph):\n" + "\n".join(missing)
    assert any(p.startswith("/api/v1/pool/") for p in spec["paths"])  # plugins' routes are in it
    assert any(p.startswith("/api/v1/lead_score/") for p in spec["paths"])
