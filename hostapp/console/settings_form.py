"""A plugin's settings form, generated from its marshmallow settings schema (no HTML from the plugin).

:func:`describe` turns the schema and the current values into a tree of
:class:`Field` for the template (inputs named by their path, ``s.recycle.no_followup.days``,
``s.rules.0.field``); :func:`parse` reads the posted form back into the
dict the schema loads; :func:`flatten` maps the schema's error messages onto
the same paths, so each error is shown at its field.

Types: strings (a select when the field has ``OneOf``), integers, decimals
and floats, booleans (a checkbox), nested schemas (a fieldset), lists of
nested schemas (one fieldset per item, a blank one to add, a box to remove),
lists of choices (checkboxes), other lists (one value a line), dicts (JSON).
Fields with ``metadata={"secret": True}`` are password inputs showing the
mask; sending the mask back keeps the secret (as the API does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema, fields, validate

from pelago.core.host import MASK

PREFIX = "s"


@dataclass
class Field:
    name: str
    path: str
    kind: str  # text, number, checkbox, select, secret, nested, list_nested, choices, lines, json
    label: str
    value: Any = None
    description: str = ""
    required: bool = False
    choices: list[str] = field(default_factory=list)
    options: list[tuple[str, str]] = field(default_factory=list)  # (value, label) of a select, when given
    children: list[Field] = field(default_factory=list)
    items: list[list[Field]] = field(default_factory=list)  # list_nested: one row of fields per item


def _choices(f: fields.Field) -> list[str]:
    for v in f.validators:
        if isinstance(v, validate.OneOf):
            return [str(c) for c in v.choices]
    return []


def _kind(f: fields.Field) -> str:
    if f.metadata.get("secret"):
        return "secret"
    if isinstance(f, fields.Boolean):
        return "checkbox"
    if isinstance(f, (fields.Integer, fields.Float, fields.Decimal)):
        return "number"
    if isinstance(f, fields.Nested) and not f.many:
        return "nested"
    if isinstance(f, fields.Nested) and f.many:
        return "list_nested"
    if isinstance(f, fields.List):
        if isinstance(f.inner, fields.Nested):
            return "list_nested"
        return "choices" if _choices(f.inner) else "lines"
    if isinstance(f, fields.Dict):
        return "json"
    return "select" if _choices(f) else "text"


def _schema_of(f: fields.Field) -> Schema:
    nested = f.inner if isinstance(f, fields.List) else f
    schema = nested.schema  # type: ignore[attr-defined]
    return schema if isinstance(schema, Schema) else schema()  # type: ignore[no-any-return]


def defaults(schema: Schema) -> dict[str, Any]:
    """The schema's defaults as stored values (``load({})`` then ``dump``), or ``{}`` when some field is required."""
    try:
        return dict(schema.dump(schema.load({})))
    except Exception:  # noqa: BLE001 - a schema with required fields has no complete defaults
        return {}


def describe(schema: Schema, values: Mapping[str, Any], prefix: str = PREFIX,
             options: Mapping[str, list[tuple[str, str]]] | None = None) -> list[Field]:
    """The form's fields; ``options``: labelled choices for top-level fields (``team_id``: the teams)."""
    out: list[Field] = []
    for name, f in schema.fields.items():
        if f.dump_only:
            continue
        path = f"{prefix}.{name}"
        kind = "password" if name == "password" else _kind(f)
        if options and name in options:
            kind = "select"
        value = values.get(name) if isinstance(values, Mapping) else None
        item = Field(name=name, path=path, kind=kind, label=name.replace("_", " "),
                     description=str(f.metadata.get("description", "")), required=f.required)
        if kind == "select":
            item.choices = _choices(f)
            if options and name in options:
                item.options = list(options[name])
        if kind == "choices":
            item.choices = _choices(f.inner)  # type: ignore[attr-defined]
        if kind == "nested":
            sub = _schema_of(f)
            item.children = describe(sub, value if isinstance(value, Mapping) else defaults(sub), path)
        elif kind == "list_nested":
            sub = _schema_of(f)
            rows = list(value or []) if isinstance(value, list) else []
            item.items = [describe(sub, row if isinstance(row, Mapping) else {}, f"{path}.{i}")
                          for i, row in enumerate(rows)]
            item.items.append(describe(sub, {}, f"{path}.{len(rows)}"))  # a blank one to add
        elif kind == "json":
            item.value = json.dumps(value if value is not None else {}, ensure_ascii=False)
        elif kind == "lines":
            item.value = "\n".join(str(v) for v in (value or []))
        elif kind == "secret":
            item.value = MASK if value not in (None, "") else ""
        elif kind == "password":
            item.value = ""
        else:
            item.value = value
        out.append(item)
    return out


class FormProblem(Exception):
    """Input the form can tell is wrong before the schema (JSON that does not parse)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("invalid form")
        self.errors = errors


def parse(schema: Schema, form: Any, prefix: str = PREFIX) -> dict[str, Any]:
    """The posted ``form`` as the dict ``schema`` loads (see the module's docstring for each type)."""
    out: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}
    for name, f in schema.fields.items():
        if f.dump_only:
            continue
        path = f"{prefix}.{name}"
        kind = "password" if name == "password" else _kind(f)
        if kind == "checkbox":
            if f"{path}.present" in form:
                out[name] = path in form
            continue
        if kind == "nested":
            keys = [k for k in form if k.startswith(f"{path}.") and not k.endswith(".present")]
            if f.allow_none and not any(str(form.get(k, "")).strip() for k in keys):
                if keys:
                    out[name] = None  # an optional group left empty: none (working hours: none)
                continue
            try:
                out[name] = parse(_schema_of(f), form, path)
            except FormProblem as exc:
                problems.update(exc.errors)
            continue
        if kind == "list_nested":
            sub = _schema_of(f)
            rows = []
            i = 0
            while any(k.startswith(f"{path}.{i}.") for k in form):
                if f"{path}.{i}.remove" not in form:
                    keys = [k for k in form if k.startswith(f"{path}.{i}.") and not k.endswith(".present")]
                    if any(str(form.get(k, "")).strip() for k in keys):  # the blank row stays out
                        try:
                            rows.append(parse(sub, form, f"{path}.{i}"))
                        except FormProblem as exc:
                            problems.update(exc.errors)
                i += 1
            out[name] = rows
            continue
        if kind == "choices":
            if f"{path}.present" in form:
                out[name] = form.getlist(path)
            continue
        if path not in form:
            continue
        raw = str(form.get(path, "")).strip()
        if kind == "password" and raw == "":
            continue  # no new password
        if kind == "lines":
            lines = [line.strip() for line in raw.splitlines() if line.strip()]
            needs_one = any(isinstance(v, validate.Length) and (v.min or 0) > 0 for v in f.validators)
            if lines or not needs_one:  # an empty list where one is not allowed: the key not given
                out[name] = lines
        elif kind == "json":
            try:
                out[name] = json.loads(raw) if raw else {}
            except ValueError:
                problems[path[len(PREFIX) + 1:]] = ["not valid JSON"]
        elif kind == "number":
            if raw == "":
                if f.allow_none:
                    out[name] = None
                continue
            try:
                out[name] = int(raw) if isinstance(f, fields.Integer) else raw
            except ValueError:
                out[name] = raw  # the schema says what is wrong with it
        elif raw == "" and f.allow_none:
            out[name] = None
        else:
            out[name] = raw
    if problems:
        raise FormProblem(problems)
    return out


def flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error messages as ``{"recycle.no_followup.days": [...], "rules.0.field": [...]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, Mapping):
                out.update(flatten(value, path))
            elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                out[path] = list(value)
            else:
                out.update(flatten(value, path))
    elif isinstance(messages, list):
        out[prefix or "_schema"] = [str(m) for m in messages]
    else:
        out[prefix or "_schema"] = [str(messages)]
    return out
