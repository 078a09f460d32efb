"""``/api/v1/sms_nurture``: templates, sequences and steps, enrolments, messages, phones, webhooks, stats.

The host answers 404 (naming the plugin) for a tenant that has it off. The
two webhooks are public (no API key): the tenant is named in the path, and the
provider's hook checks the signature (401/403 otherwise) before anything is
read or written.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import request
from sqlalchemy import select

from pelago.plugin import (
    Blueprint,
    InvalidInput,
    Lead,
    NotFound,
    commit,
    current_context,
    paginate,
    public_route,
    requires,
    webhook_context,
)

from . import dispatch, enrolling, phones, sequences
from . import schemas as s
from .hookspecs import WebhookRequest
from .models import Enrolment, Message, Phone, SmsSequence, Step, Template

blp = Blueprint("sms_nurture", __name__, description="SMS nurturing: sequences, enrolments, messages, opt-out")
MAX_CSV = 1024 * 1024
MAX_WEBHOOK = 256 * 1024
PROVIDER = "<string:provider>"


# --- templates ------------------------------------------------------------------------------


@blp.route("/templates", methods=["GET"])
@blp.arguments(s.SmsPageArgs, location="query")
@blp.response(200, s.SmsTemplatePage)
def list_templates(args: dict[str, Any]) -> Any:
    """List templates

    The tenant's SMS templates, newest first, with their bodies and variables. Any user of the tenant (reps too)
    may read them; `?limit=` (at most 200) and `?cursor=` page.
    """
    c = current_context()
    page = paginate(c.session, select(Template), Template.id, args["cursor"], args["limit"])
    return {"items": [sequences.template_out(t) for t in page.items], "next_cursor": page.next_cursor}


@blp.route("/templates", methods=["POST"])
@blp.arguments(s.SmsTemplateIn)
@blp.response(201, s.SmsTemplate)
@requires("manager")
def create_template(data: dict[str, Any]) -> Any:
    """A template; one with an unknown variable is refused here (422), not at send time.

    Managers only. The body's variables are checked when it is saved: an unknown one is a 422 naming it, so no
    message fails at send time for it. Returns the new template (201).
    """
    c = current_context()
    out = sequences.template_out(sequences.create_template(c, data))
    commit()
    return out


@blp.route("/templates/<int:template_id>", methods=["GET"])
@blp.response(200, s.SmsTemplate)
def show_template(template_id: int) -> Any:
    """Show a template

    One template with its body and variables; any user of the tenant (reps too) may read it. An unknown id is a
    404.
    """
    return sequences.template_out(sequences.get_template(current_context(), template_id))


@blp.route("/templates/<int:template_id>", methods=["PATCH"])
@blp.arguments(s.SmsTemplatePatch)
@blp.response(200, s.SmsTemplate)
@requires("manager")
def patch_template(data: dict[str, Any], template_id: int) -> Any:
    """Change a template: messages already sent keep their text; the next ones use the new one.

    Managers only. The new body is checked like a new template's (422 for an unknown variable); an unknown id
    is a 404. Nothing is resent: messages already planned or sent keep the text they had.
    """
    c = current_context()
    out = sequences.template_out(sequences.update_template(c, sequences.get_template(c, template_id), data))
    commit()
    return out


@blp.route("/templates/<int:template_id>/preview", methods=["GET"])
@blp.arguments(s.SmsPreviewArgs, location="query")
@blp.response(200, s.SmsPreview)
def preview_template(args: dict[str, Any], template_id: int) -> Any:
    """The template rendered for ``lead_id`` (or with its variables' names), counted in characters and segments.

    Renders the saved body, or `?body=` to try a draft, for `?lead_id=` (404 if there is no such lead) or with
    the variables' names when no lead is given, and counts characters and SMS segments. Any user of the
    tenant (reps too) may preview; nothing is written.
    """
    c = current_context()
    body = args.get("body") or sequences.get_template(c, template_id).body
    return sequences.preview(c, body, args.get("lead_id"))


# --- sequences and steps --------------------------------------------------------------------


@blp.route("/sequences", methods=["GET"])
@blp.arguments(s.SmsPageArgs, location="query")
@blp.response(200, s.SmsSequencePage)
def list_sequences(args: dict[str, Any]) -> Any:
    """List sequences

    The tenant's nurture sequences, newest first, each with its trigger, status and steps. Any user
    of the tenant (reps too) may read them; `?limit=` (at most 200) and `?cursor=` page.
    """
    c = current_context()
    page = paginate(c.session, select(SmsSequence), SmsSequence.id, args["cursor"], args["limit"])
    return {"items": [sequences.sequence_out(c, q) for q in page.items], "next_cursor": page.next_cursor}


@blp.route("/sequences", methods=["POST"])
@blp.arguments(s.SmsSequenceIn)
@blp.response(201, s.SmsSequence)
@requires("manager")
def create_sequence(data: dict[str, Any]) -> Any:
    """Create a sequence

    Managers only. A sequence with a trigger (`manual` by default; `not_contacted` needs `trigger_hours`) and
    its steps, each naming a template and a delay. An unknown template, a negative delay or a send window with
    one end only is a 422. Returns the new sequence (201).
    """
    c = current_context()
    out = sequences.sequence_out(c, sequences.create_sequence(c, data))
    commit()
    return out


@blp.route("/sequences/<int:sequence_id>", methods=["GET"])
@blp.response(200, s.SmsSequence)
def show_sequence(sequence_id: int) -> Any:
    """Show a sequence

    One sequence with its trigger, status and steps; any user of the tenant (reps too) may read it. An unknown
    id is a 404.
    """
    c = current_context()
    return sequences.sequence_out(c, sequences.get_sequence(c, sequence_id))


@blp.route("/sequences/<int:sequence_id>", methods=["PATCH"])
@blp.arguments(s.SmsSequencePatch)
@blp.response(200, s.SmsSequence)
@requires("manager")
def patch_sequence(data: dict[str, Any], sequence_id: int) -> Any:
    """Rename, pause (``status: paused``: nothing is planned or sent) or resume, change the trigger.

    Managers only; an unknown id is a 404. While paused, queued messages wait (and are dropped if their
    validity passes meanwhile). Editing a live sequence never resends: changes apply to the messages not
    planned yet.
    """
    c = current_context()
    out = sequences.sequence_out(c, sequences.update_sequence(c, sequences.get_sequence(c, sequence_id), data))
    commit()
    return out


@blp.route("/sequences/<int:sequence_id>/steps", methods=["POST"])
@blp.arguments(s.SmsStepIn)
@blp.response(201, s.SmsSequence)
@requires("manager")
def add_step(data: dict[str, Any], sequence_id: int) -> Any:
    """Append a step; active enrolments that have not passed its position get it too.

    Managers only; an unknown sequence is a 404, an unknown template or a bad window a 422. Each (enrolment,
    step) has a single outbox row, so no one receives a step twice. Steps are never deleted: pause the sequence
    and make a new one instead. Returns the sequence with its steps (201).
    """
    c = current_context()
    seq = sequences.get_sequence(c, sequence_id)
    sequences.add_step(c, seq, data)
    out = sequences.sequence_out(c, seq)
    commit()
    return out


@blp.route("/sequences/<int:sequence_id>/steps/<int:step_id>", methods=["PATCH"])
@blp.arguments(s.SmsStepPatch)
@blp.response(200, s.SmsSequence)
@requires("manager")
def patch_step(data: dict[str, Any], sequence_id: int, step_id: int) -> Any:
    """Change a step; its messages already planned or sent are not planned again.

    Managers only. A step that is not in this sequence is a 404; an unknown template or a bad window is a 422.
    A new template or delay applies only to the messages not planned yet. Returns the sequence with its steps.
    """
    c = current_context()
    seq = sequences.get_sequence(c, sequence_id)
    step = c.session.scalars(select(Step).where(Step.id == step_id, Step.sequence_id == seq.id)).first()
    if step is None:
        raise NotFound(f"step {step_id} not found in sequence {sequence_id}")
    sequences.update_step(c, step, data)
    out = sequences.sequence_out(c, seq)
    commit()
    return out


@blp.route("/sequences/<int:sequence_id>/stats", methods=["GET"])
@blp.response(200, s.SmsStats)
def sequence_stats(sequence_id: int) -> Any:
    """Enrolled, active, sent, delivered, failed, skipped, dropped, replied, opted out, converted.

    The sequence's counts of enrolments and messages by outcome, for judging whether it works. Any user of the
    tenant (reps too) may read them; an unknown sequence is a 404.
    """
    c = current_context()
    return sequences.stats(c, sequences.get_sequence(c, sequence_id))


@blp.route("/sequences/<int:sequence_id>/enrolments", methods=["POST"])
@blp.arguments(s.SmsEnrolIn)
@blp.response(200, s.SmsEnrolResult)
@requires("manager")
def enrol(data: dict[str, Any], sequence_id: int) -> Any:
    """Enrol leads by id or by a filter (at most 1,000); each refused one with its reason.

    Managers only. Give `lead_ids` or a `filter` (source, stage, owner, created between), not both (422), and a
    `pass` (default `manual`). A lead is enrolled at most once per (sequence, pass) and has at most one active
    enrolment per sequence, both unique in the database, so a repeat is refused with its reason rather than
    sent twice; so are leads unknown or without a phone, and all of them while the sequence is paused or has no
    steps. An unknown sequence is a 404.
    """
    c = current_context()
    seq = sequences.get_sequence(c, sequence_id)
    if "lead_ids" in data:
        ids = data["lead_ids"]
    else:
        f = data["filter"]
        q = select(Lead.id)
        for key in ("source", "stage", "owner_id"):
            if key in f:
                q = q.where(getattr(Lead, key) == f[key])
        if f.get("created_after"):
            q = q.where(Lead.created_at >= f["created_after"])
        if f.get("created_before"):
            q = q.where(Lead.created_at < f["created_before"])
        ids = list(c.session.scalars(q.order_by(Lead.id).limit(s.MAX_IDS)))
    result = enrolling.enrol(c, seq, ids, data["pass_key"], "manual")
    commit()
    return {"enrolled": result.enrolled, "refused": {str(k): v for k, v in result.refused.items()}}


CSV_DOC = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": f"a UTF-8 CSV, at most {MAX_CSV} bytes, with a column lead_id or phone"},
        "pass": {"type": "string", "description": "the pass (default manual)"},
    },
}}}}


@blp.route("/sequences/<int:sequence_id>/enrolments/csv", methods=["POST"])
@blp.response(200, s.SmsEnrolCsvResult)
@blp.doc(requestBody=CSV_DOC)
@requires("manager")
def enrol_csv(sequence_id: int) -> Any:
    """Enrol the leads of a CSV (a ``lead_id`` or a ``phone`` column).

    Managers only. Send the file as the multipart field `file` (UTF-8, at most 1 MiB and 10,000 rows) and
    optionally `pass` (default `manual`); phones are matched to the tenant's leads. A missing file, a file that
    is not a UTF-8 CSV, no `lead_id` or `phone` column, a bad id or phone is a 422 naming the line. Enrolment
    is the same as by id: once per (sequence, pass), the refused ones with their reason.
    """
    c = current_context()
    seq = sequences.get_sequence(c, sequence_id)
    request.max_content_length = MAX_CSV + 4096
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInput("no file", {"file": ["send the CSV as the multipart/form-data field 'file'"]}, "form")
    pass_key = request.form.get("pass") or "manual"
    try:
        loaded = s.SmsEnrolIn().load({"lead_ids": [1], "pass": pass_key})
    except Exception as exc:  # noqa: BLE001 - a marshmallow ValidationError
        raise InvalidInput("invalid pass", getattr(exc, "messages", {"pass": ["invalid"]}), "form") from None
    try:
        reader = csv.DictReader(io.StringIO(upload.read(MAX_CSV + 1).decode("utf-8-sig")))
        rows = list(reader)
    except (UnicodeDecodeError, csv.Error):
        raise InvalidInput("not a UTF-8 CSV", {"file": ["not a UTF-8 CSV"]}, "form") from None
    header = set(reader.fieldnames or [])
    if not header & {"lead_id", "phone"}:
        raise InvalidInput("no lead_id or phone column", {"file": ["needs a lead_id or phone column"]}, "form")
    if len(rows) > 10_000:
        raise InvalidInput("too many rows", {"file": ["at most 10,000 rows"]}, "form")
    ids: set[int] = set()
    wanted_phones = set()
    for i, row in enumerate(rows, start=2):
        if row.get("lead_id"):
            try:
                ids.add(int(row["lead_id"]))
            except ValueError:
                raise InvalidInput("bad lead_id", {"file": [f"line {i}: lead_id is not a number"]}, "form") from None
        elif row.get("phone"):
            wanted_phones.add(phones.normalise(c, row["phone"], f"file line {i}"))
    if wanted_phones:
        ids |= set(c.session.scalars(select(Lead.id).where(Lead.phone.in_(wanted_phones))))
    result = enrolling.enrol(c, seq, [i for i in ids if 0 < i < 2**63], loaded["pass_key"], "csv")
    commit()
    return {"rows": len(rows), "enrolled": result.enrolled, "refused": {str(k): v for k, v in result.refused.items()}}


# --- enrolments and messages ----------------------------------------------------------------


def _enrolment_out(e: Enrolment) -> dict[str, Any]:
    return {k: getattr(e, k) for k in ("id", "lead_id", "sequence_id", "pass_key", "status", "reason", "source",
                                       "enrolled_at", "ended_at", "next_position", "next_due_at")}


@blp.route("/enrolments", methods=["GET"])
@blp.arguments(s.SmsEnrolmentArgs, location="query")
@blp.response(200, s.SmsEnrolmentPage)
def list_enrolments(args: dict[str, Any]) -> Any:
    """Enrolments, newest first; of one lead (``lead_id``) or one sequence (``sequence_id``).

    Each enrolment with its pass, status, exit reason and next planned step. Any user of the tenant (reps too)
    may read them; `?limit=` (at most 200) and `?cursor=` page.
    """
    c = current_context()
    q = select(Enrolment)
    if args.get("lead_id"):
        q = q.where(Enrolment.lead_id == args["lead_id"])
    if args.get("sequence_id"):
        q = q.where(Enrolment.sequence_id == args["sequence_id"])
    page = paginate(c.session, q, Enrolment.id, args["cursor"], args["limit"])
    return {"items": [_enrolment_out(e) for e in page.items], "next_cursor": page.next_cursor}


@blp.route("/enrolments/<int:enrolment_id>/exit", methods=["POST"])
@blp.arguments(s.SmsExitIn)
@blp.response(200, s.SmsEnrolment)
@requires("manager")
def exit_enrolment(data: dict[str, Any], enrolment_id: int) -> Any:
    """End an enrolment by hand; its queued messages are skipped.

    Managers only. The enrolment ends with `reason` (default `manual`) and its queued messages are skipped with
    that reason; nothing more is sent for it. An unknown enrolment is a 404.
    """
    c = current_context()
    found = c.session.scalars(select(Enrolment).where(Enrolment.id == enrolment_id)).first()
    if found is None:
        raise NotFound(f"enrolment {enrolment_id} not found")
    enrolling.exit_enrolment(c, enrolment_id, data["reason"])
    c.session.refresh(found)
    out = _enrolment_out(found)
    commit()
    return out


MESSAGE_FIELDS = ("id", "our_id", "lead_id", "sequence_id", "enrolment_id", "step_id", "phone", "status", "reason",
                  "planned_at", "due_at", "expires_at", "body", "segments", "provider", "provider_id", "attempts",
                  "sent_at", "final_at")


@blp.route("/messages", methods=["GET"])
@blp.arguments(s.SmsMessageArgs, location="query")
@blp.response(200, s.SmsMessagePage)
def list_messages(args: dict[str, Any]) -> Any:
    """Messages newest first, with status and the reason of any skip or drop; per lead, sequence or status.

    The outbox as the lead's history: each message's text, segments, provider id, attempts and times. Any
    user of the tenant (reps too) may read it; `?limit=` (at most 200) and `?cursor=` page.
    """
    c = current_context()
    q = select(Message)
    for key in ("lead_id", "sequence_id", "status"):
        if args.get(key):
            q = q.where(getattr(Message, key) == args[key])
    page = paginate(c.session, q, Message.id, args["cursor"], args["limit"])
    return {"items": [{k: getattr(m, k) for k in MESSAGE_FIELDS} for m in page.items],
            "next_cursor": page.next_cursor}


# --- phones ---------------------------------------------------------------------------------


def _phone_out(p: Phone) -> dict[str, Any]:
    return {k: getattr(p, k) for k in ("id", "phone", "consent_at", "consent_source", "consent_text",
                                       "suppressed_at", "suppressed_source", "suppressed_text")}


def _phone(c: Any, phone: str) -> dict[str, Any]:
    row = c.session.scalars(select(Phone).where(Phone.phone == phone)).one()
    c.session.refresh(row)
    return _phone_out(row)


@blp.route("/suppressions", methods=["GET"])
@blp.arguments(s.SmsPhoneArgs, location="query")
@blp.response(200, s.SmsPhonePage)
def list_suppressions(args: dict[str, Any]) -> Any:
    """Suppressed phones, most recent first.

    Phones that are not texted, with the evidence of the suppression (source, time, text). Any user
    of the tenant (reps too) may read them; `?limit=` (at most 200) and `?cursor=` page.
    """
    c = current_context()
    page = paginate(c.session, select(Phone).where(Phone.suppressed_at.is_not(None)), Phone.id, args["cursor"],
                    args["limit"])
    return {"items": [_phone_out(p) for p in page.items], "next_cursor": page.next_cursor}


@blp.route("/suppressions", methods=["POST"])
@blp.arguments(s.SmsPhoneIn)
@blp.response(200, s.SmsPhone)
@requires("rep")
def add_suppression(data: dict[str, Any]) -> Any:
    """Suppress a phone (a rep heard "don't text me"): every lead with it leaves every sequence.

    Reps and above. The phone is normalised (422 if it is not a phone number) and suppressed for the tenant,
    with the evidence given; the enrolments of every lead with that phone end as `opted_out` and their queued
    messages are skipped.
    """
    c = current_context()
    phone = phones.normalise(c, data["phone"])
    phones.suppress(c, phone, data["source"], data["text"], data.get("at"))
    out = _phone(c, phone)
    commit()
    return out


@blp.route("/suppressions/remove", methods=["POST"])
@blp.arguments(s.SmsPhoneIn)
@blp.response(200, s.SmsPhone)
@requires("manager")
def remove_suppression(data: dict[str, Any]) -> Any:
    """Lift a suppression, with the evidence why (the person opted in again); 404 if it was not suppressed.

    Managers only. The phone is normalised (422 if it is not a phone number); its suppression is lifted and the
    evidence recorded. Leads are not enrolled again by this: enrol them anew.
    """
    c = current_context()
    phone = phones.normalise(c, data["phone"])
    if not phones.unsuppress(c, phone, data["source"], data["text"]):
        raise NotFound(f"{phone} is not suppressed")
    out = _phone(c, phone)
    commit()
    return out


@blp.route("/consents", methods=["POST"])
@blp.arguments(s.SmsPhoneIn)
@blp.response(200, s.SmsPhone)
@requires("rep")
def add_consent(data: dict[str, Any]) -> Any:
    """Record consent for a phone, with its evidence (source, time, what was agreed to).

    Reps and above. The phone is normalised (422 if it is not a phone number) and its consent stored with the
    source, time and text given, as evidence of what the person agreed to.
    """
    c = current_context()
    phone = phones.normalise(c, data["phone"])
    phones.consent(c, phone, data["source"], data["text"], data.get("at"))
    out = _phone(c, phone)
    commit()
    return out


# --- webhooks (public, signed) --------------------------------------------------------------


def _webhook_request() -> WebhookRequest:
    request.max_content_length = MAX_WEBHOOK + 1
    body = request.get_data(cache=True)
    if len(body) > MAX_WEBHOOK:
        raise InvalidInput("body too large", {"body": [f"at most {MAX_WEBHOOK} bytes"]})
    return WebhookRequest(headers={k.lower(): v for k, v in request.headers.items()}, body=body,
                          query=dict(request.args.items()), url=request.url)


WEBHOOK_DOC = {"security": [], "requestBody": {"required": True, "description": "the provider's own format, signed",
                                               "content": {"application/json": {"schema": {"type": "object"}}}}}


def _parse(hook: str, tenant: str, provider: str) -> tuple[Any, list[Any]]:
    req = _webhook_request()
    c = webhook_context(tenant)
    answers = getattr(c.hooks, hook)(ctx=c, provider=provider, request=req)
    if not answers:
        raise NotFound(f"no provider {provider!r} is on for this tenant")
    return c, list(answers[0])


@blp.route(f"/webhooks/<string:tenant>/{PROVIDER}/receipts", methods=["POST"])
@blp.response(200, s.SmsWebhookResult)
@blp.doc(**WEBHOOK_DOC)
@public_route
def receipts(tenant: str, provider: str) -> Any:
    """Delivery receipts: signed by the provider (403 otherwise); statuses only move forward.

    Public: no API key; the tenant is named in the path and the provider's hook checks the signature (401/403
    otherwise) before anything is read or written. 404 for an unknown tenant or provider, or the plugin off; a
    body over 256 KiB is refused. Each receipt moves its message's status forward only, so a late or repeated
    receipt changes nothing. Answers how many were accepted and how many moved.
    """
    c, items = _parse("sms_nurture_parse_receipt", tenant, provider)
    moved = dispatch.advance(c, items)
    commit()
    return {"accepted": len(items), "moved": moved}


@blp.route(f"/webhooks/<string:tenant>/{PROVIDER}/inbound", methods=["POST"])
@blp.response(200, s.SmsWebhookResult)
@blp.doc(**WEBHOOK_DOC)
@public_route
def inbound(tenant: str, provider: str) -> Any:
    """Replies: an opt-out word (T, TD, 退订, R, STOP, UNSUBSCRIBE) suppresses the phone; any reply ends its sequences.

    Public: no API key; the tenant is named in the path and the provider's hook checks the signature (401/403
    otherwise) before anything is read or written. 404 for an unknown tenant or provider, or the plugin off; a
    body over 256 KiB is refused. An opt-out word suppresses the phone for the tenant and ends every enrolment of
    its leads as `opted_out`; any other reply ends them as `replied`.
    """
    c, items = _parse("sms_nurture_parse_inbound", tenant, provider)
    handled = phones.receive(c, provider, items)
    commit()
    return {"accepted": len(items), "moved": handled}
