"""Reading a console form with the API's own marshmallow schemas, so both accept exactly the same input."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import request
from marshmallow import Schema, ValidationError, fields

from pelago.core.errors import InvalidInput

from .. import strict_input


def read(schema: Schema, source: Mapping[str, Any] | None = None, *, keep: Iterable[str] = (),
         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data, field errors)`` of the posted form (or ``source``) loaded by ``schema``.

    Empty inputs count as not given (a form sends every input), except the
    names in ``keep``; unknown inputs (the CSRF token, buttons) are ignored.
    """
    raw = source if source is not None else request.form
    given: dict[str, Any] = {}
    for name in schema.fields:
        if name not in raw:
            continue
        value = raw.get(name)
        if isinstance(value, str):
            value = value.strip()
            try:
                strict_input.check_text(value)
            except strict_input.BadInput as exc:
                return {}, {name: [str(exc)]}
        if value == "" and name not in keep:
            continue
        if isinstance(schema.fields[name], fields.Integer) and isinstance(value, str) and value.isdigit():
            value = int(value)  # the API's id fields are strict integers; a form sends text
        given[name] = value
    try:
        return schema.load(given, unknown="exclude"), {}
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        return {}, messages


def errors_of(exc: InvalidInput) -> dict[str, Any]:
    """A service's field errors, for showing at the fields."""
    return dict(exc.errors or {})
