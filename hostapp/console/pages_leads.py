"""Leads: the list with the API's filters, the lead page and its actions, creating a lead.

Every read and write goes through :mod:`pelago.core.services.leads` and
:mod:`pelago.core.services.deals`, as the API's views do, and every form is
read with the API's schema: visibility (a rep's own leads), the stage
machine, vetoes and duplicates are decided there, never here.
"""

from __future__ import annotations

from typing import Any

from flask import request
from sqlalchemy import select

from pelago.core.errors import Conflict, Forbidden, InvalidInput, PelagoError
from pelago.core.models import ACTIVITY_KINDS, STAGE_TRANSITIONS, STAGES, Deal, Team, User
from pelago.core.services import deals as deal_svc
from pelago.core.services import leads as svc

from ..api import schemas as s
from ..auth import ctx
from . import bp, forms
from .web import _, back, console, render_page

PAGE = 25


def _people() -> dict[int, str]:
    session = ctx().session
    return {u.id: (u.name or u.email) for u in session.scalars(select(User).order_by(User.name, User.email))}


def _teams() -> dict[int, str]:
    return dict(ctx().session.execute(select(Team.id, Team.name).order_by(Team.name)).all())


@bp.get("/leads")
def leads() -> Any:
    """The list: stage, owner, team, source, dates and a search (phone in any format, email, name prefix)."""
    c = ctx()
    filters, errors = forms.read(s.LeadFilter(), request.args)
    items: list[Any] = []
    next_cursor = None
    if not errors:
        cursor = filters.pop("cursor", None)
        filters.pop("limit", None)
        try:
            page = svc.list_leads(c, filters, cursor, PAGE)
            items, next_cursor = page.items, page.next_cursor
        except InvalidInput as exc:  # a malformed cursor
            errors = forms.errors_of(exc)
    args = {k: v for k, v in request.args.items() if k != "cursor" and v}
    return render_page("console/leads.html", items=items, next_cursor=next_cursor, args=args, errors=errors,
                       people=_people(), teams=_teams(), stages=STAGES)


@bp.route("/leads/new", methods=["GET", "POST"])
def new_lead() -> Any:
    """Create a lead; a duplicate is merged into the lead it repeats (or, a colleague's, reported)."""
    c = ctx()
    errors: dict[str, Any] = {}
    error = None
    if request.method == "POST":
        data, errors = forms.read(s.LeadCreate())
        if not errors:
            me = console().user
            if me.role == "rep":
                data["owner_id"] = me.id  # a rep's own lead is hers, as in the API
            touch = {"channel": "console"}
            try:
                result = svc.create_lead(c, data, touch=touch)
                if me.role == "rep" and result.lead.owner_id != me.id:
                    c.session.rollback()
                    raise Conflict(_("This lead already exists and is not yours (lead {lead_id}).",
                                     lead_id=result.lead.id))
            except InvalidInput as exc:
                c.session.rollback()
                errors, error = forms.errors_of(exc), exc.message
            except PelagoError as exc:
                c.session.rollback()
                error = exc.message
            else:
                message = _("This lead already existed: the submission was merged into it.") if result.merged \
                    else _("Lead created.")
                return back("console.lead", message, lead_id=result.lead.id)
    return render_page("console/lead_new.html", form=request.form, errors=errors, error=error,
                       teams=_teams(), people=_people()), 200 if not (errors or error) else 422


def _lead_page(lead_id: int, *, error: str | None = None, errors: dict[str, Any] | None = None,
               form: str | None = None, status: int = 200) -> Any:
    c = ctx()
    lead = svc.get_lead(c, lead_id)
    touches = svc.list_touches(c, lead, None, 50).items
    history = svc.history(c, lead, plugins=True)
    deals = list(c.session.scalars(select(Deal).where(Deal.lead_id == lead.id).order_by(Deal.id.desc())))
    allowed = [st for st in STAGES if st in STAGE_TRANSITIONS.get(lead.stage, ())]  # the service still decides
    html = render_page("console/lead.html", lead=lead, touches=touches, history=history, deals=deals,
                       people=_people(), teams=_teams(), kinds=ACTIVITY_KINDS, stages=allowed,
                       error=error, errors=errors or {}, failed_form=form, posted=request.form)
    return html, status


@bp.get("/leads/<int:lead_id>")
def lead(lead_id: int) -> Any:
    return _lead_page(lead_id)


def _act(lead_id: int, form: str, schema: Any, action: Any, done: str, source: Any = None) -> Any:
    """Run one of the lead page's forms: read it with the API's schema, act through the service, redirect."""
    c = ctx()
    data, errors = forms.read(schema, source, keep=("note",))
    if errors:
        return _lead_page(lead_id, error=_("Please correct the fields marked below."), errors=errors, form=form,
                          status=422)
    try:
        action(c, data)
    except InvalidInput as exc:
        c.session.rollback()
        return _lead_page(lead_id, error=exc.message, errors=forms.errors_of(exc), form=form, status=422)
    except (Conflict, Forbidden) as exc:
        c.session.rollback()
        return _lead_page(lead_id, error=exc.message, form=form, status=exc.status)
    return back("console.lead", done, lead_id=lead_id)


@bp.post("/leads/<int:lead_id>/activity")
def log_activity(lead_id: int) -> Any:
    def act(c: Any, data: dict[str, Any]) -> None:
        svc.log_activity(c, svc.get_lead(c, lead_id), data["kind"], data["note"], data.get("occurred_at"))

    return _act(lead_id, "activity", s.ActivityArgs(), act, _("Activity logged."))


@bp.post("/leads/<int:lead_id>/stage")
def change_stage(lead_id: int) -> Any:
    def act(c: Any, data: dict[str, Any]) -> None:
        svc.change_stage(c, svc.get_lead(c, lead_id, for_update=True), data["stage"], data.get("lost_reason"))

    return _act(lead_id, "stage", s.StageArgs(), act, _("Stage changed."))


@bp.post("/leads/<int:lead_id>/assign")
def assign(lead_id: int) -> Any:
    """Give the lead to someone, or release it (managers); a plugin's veto is shown with its reason."""
    if not console().at_least("manager"):
        raise Forbidden("this needs the manager role or higher")
    source = {"user_id": request.form.get("user_id") or None, "note": request.form.get("note", "")}

    def act(c: Any, data: dict[str, Any]) -> None:
        svc.assign(c, svc.get_lead(c, lead_id, for_update=True), data["user_id"], note=data["note"])

    return _act(lead_id, "assign", s.AssignArgs(), act, _("Assigned."), source=source)


@bp.post("/leads/<int:lead_id>/lock")
def lock(lead_id: int) -> Any:
    c = ctx()
    locked = request.form.get("locked") == "1"
    try:
        svc.update_lead(c, svc.get_lead(c, lead_id, for_update=True), {"locked": locked})
    except (Conflict, Forbidden) as exc:
        c.session.rollback()
        return _lead_page(lead_id, error=exc.message, form="lock", status=exc.status)
    return back("console.lead", _("Saved."), lead_id=lead_id)


@bp.post("/leads/<int:lead_id>/deal")
def record_deal(lead_id: int) -> Any:
    def act(c: Any, data: dict[str, Any]) -> None:
        deal_svc.record_deal(c, svc.get_lead(c, lead_id, for_update=True), **data)

    return _act(lead_id, "deal", s.DealArgs(), act, _("Deal recorded."))


@bp.post("/leads/<int:lead_id>/deals/<int:deal_id>/refund")
def refund(lead_id: int, deal_id: int) -> Any:
    def act(c: Any, data: dict[str, Any]) -> None:
        deal = deal_svc.get_deal(c, deal_id)
        if deal.lead_id != lead_id:
            raise InvalidInput("not a deal of this lead", {"deal_id": ["not a deal of this lead"]})
        deal_svc.refund(c, deal_id, amount=data["amount"], reason=data["reason"])

    return _act(lead_id, f"refund-{deal_id}", s.RefundArgs(), act, _("Refund recorded."))

