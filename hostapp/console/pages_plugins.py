"""Plugins: each deployed plugin, its switch for this tenant, and its generated settings form (admins)."""

from __future__ import annotations

from typing import Any

from flask import request

from pelago.core.errors import Conflict, InvalidInput, NotFound
from pelago.core.services.plugins import configure

from ..auth import ctx
from . import bp, settings_form
from .web import _, back, console_requires, render_page


def _form_fields(name: str) -> list[settings_form.Field]:
    c = ctx()
    spec = c.host.spec(name)
    if spec.settings is None:
        return []
    schema = spec.settings()
    current = {**settings_form.defaults(schema), **c.host.masked(name, c.tenant.settings.get(name, {}))}
    return settings_form.describe(schema, current)


@bp.get("/plugins")
@console_requires("admin")
def plugins() -> Any:
    c = ctx()
    items = [{"spec": spec, "enabled": name in c.tenant.enabled} for name, spec in c.host.specs.items()]
    return render_page("console/plugins.html", items=items, failures=list(c.host.failures.values()))


@bp.post("/plugins/<name>/switch")
@console_requires("admin")
def switch(name: str) -> Any:
    c = ctx()
    c.host.spec(name)
    enabled = request.form.get("enabled") == "1"
    try:
        configure(c, name, enabled=enabled)
    except (Conflict, InvalidInput) as exc:  # a requirement missing, or a dependant still on
        c.session.rollback()
        c = ctx()
        items = [{"spec": spec, "enabled": n in c.tenant.enabled} for n, spec in c.host.specs.items()]
        html = render_page("console/plugins.html", items=items, failures=list(c.host.failures.values()),
                           error=exc.message, refused=name)
        return html, exc.status
    return back("console.plugins", _("Switched."))


@bp.route("/plugins/<name>", methods=["GET", "POST"])
@console_requires("admin")
def plugin_settings(name: str) -> Any:
    c = ctx()
    spec = c.host.spec(name)
    if spec.settings is None and request.method == "POST":
        raise NotFound("this plugin takes no settings")
    errors: dict[str, list[str]] = {}
    error = None
    if request.method == "POST":
        assert spec.settings is not None
        try:
            given = settings_form.parse(spec.settings(), request.form)
            configure(c, name, settings=given)
        except settings_form.FormProblem as exc:
            errors = exc.errors
        except InvalidInput as exc:
            c.session.rollback()
            errors = settings_form.flatten((exc.errors or {}).get("settings", exc.errors))
        else:
            return back("console.plugin_settings", _("Settings saved."), name=name)
        error = _("Please correct the fields marked below.")
    fields = _form_fields(name)
    if request.method == "POST":
        _keep_posted(fields, request.form)
    html = render_page("console/plugin.html", spec=spec, enabled=name in c.tenant.enabled, fields=fields,
                       errors=errors, error=error, prefix=settings_form.PREFIX + ".")
    return html, 422 if error else 200


def _keep_posted(fields: list[settings_form.Field], form: Any) -> None:
    """Show what was posted (not the stored values) after a refusal, so nothing typed is lost."""
    for f in fields:
        if f.kind in ("text", "number", "select", "lines", "json", "secret") and f.path in form:
            f.value = form.get(f.path)
        elif f.kind == "checkbox" and f"{f.path}.present" in form:
            f.value = f.path in form
        elif f.kind == "choices" and f"{f.path}.present" in form:
            f.value = form.getlist(f.path)
        _keep_posted(f.children, form)
        for row in f.items:
            _keep_posted(row, form)
