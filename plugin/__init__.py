"""``pelago.plugin``: everything a Pelago plugin may import, and nothing else.

The one public surface for plugin authors, as CKAN has its ``toolkit`` and
Datasette its short ``__init__``. Bundled plugins, ``examples/`` and the
plugins ``pelago plugin new`` makes import only this module (and
``pelago.testing`` in their tests); a test enforces it. The names in
``__all__`` change only with a deprecation period (docs/versioning.md);
anything else in ``pelago.*`` is internal and may move. The reference of
every name, with its signature, is docs/reference.md, generated from here.
"""

from __future__ import annotations

from pelago.core import __version__
from pelago.core.asking import ask_in_order, first_answers, refusals
from pelago.core.clock import Clock, FrozenClock, system_clock
from pelago.core.context import Actor, HookContext, JobContext, TenantState
from pelago.core.crypto import EncryptedString
from pelago.core.db import (
    Base,
    BigId,
    JsonDoc,
    Money,
    TenantScoped,
    UtcDateTime,
    among,
    conflict_key,
    dialect_name,
    flush_or_conflict,
    insert_ignoring_conflict,
    per_transaction,
    tenant_key,
    upsert,
)
from pelago.core.errors import Conflict, Forbidden, InvalidInput, NotFound, PelagoError, Vetoed
from pelago.core.events import Event
from pelago.core.events import emitted as event_emitted
from pelago.core.events import subscribers as event_subscribers
from pelago.core.markers import hookimpl, hookspec
from pelago.core.models import (
    ACTIVITY_KINDS,
    ROLES,
    STAGES,
    Activity,
    Deal,
    Import,
    Lead,
    Refund,
    StageChange,
    Team,
    Tenant,
    Touch,
    User,
)
from pelago.core.money import split_money, to_money
from pelago.core.outbound import OutboundRefused, OutboundResponse, OutboundURL, post_json
from pelago.core.outbound import sign as sign_body
from pelago.core.ownership import (
    Move,
    Moved,
    OwnerlessFlow,
    OwnershipStep,
    Taken,
    change_owners,
    explain_unowned,
    ownerless_flows,
    ownership_history,
    release_leads,
    take_unowned,
)
from pelago.core.ownership import assign_leads as assign_leads
from pelago.core.pagination import MAX_LIMIT, Page, paginate
from pelago.core.pagination import decode as decode_cursor
from pelago.core.pagination import encode as encode_cursor
from pelago.core.payloads import (
    ActivityLogged,
    DealRefunded,
    DealWon,
    LeadAssigned,
    LeadCreated,
    LeadMerged,
    LeadReleased,
    LeadStageChanged,
    PersonErased,
    PluginSettingsChanged,
    PluginSwitched,
    erased_lead_ids,
)
from pelago.core.posts import queue_post
from pelago.core.records import NewActivity, change_stage, log_activities, record_deal, refund_deal
from pelago.core.routing import Assignment, OwnerChoice, TeamChoice, day_start, default_intake_team
from pelago.core.runtime import Runtime, find_tenant, tenant_context
from pelago.core.scheduler import tenants_with
from pelago.core.services.intake import Outcome as IntakeOutcome
from pelago.core.services.intake import Submission, ingest
from pelago.core.services.leads import visible as visible_leads
from pelago.core.snapshots import LeadInfo, TeamInfo, UserInfo
from pelago.core.spec import ConsolePages, DashboardPanel, Job, MenuEntry, Periodic, PluginSpec
from pelago.core.tenant_keys import migrate_to_tenant_keys, tenant_key_as_migrated
from pelago.core.timeline import TimelineEntry
from pelago.core.vetoes import first_veto, refuse_if_vetoed, vetoes, vetoes_needed
from pelago.hostapp.api import Blueprint, LocalTime, MoneyString, file_response
from pelago.hostapp.api.imports import ImportDetail, upload_import
from pelago.hostapp.api.schemas import NewLead as NewLeadSchema
from pelago.hostapp.api.schemas import PageArgs as ListArgs
from pelago.hostapp.auth import commit, enter_tenant, public_session, requires, webhook_context
from pelago.hostapp.auth import ctx as current_context
from pelago.hostapp.auth import public as public_route
from pelago.hostapp.cli import pass_runtime
from pelago.hostapp.console.forms import read as console_form
from pelago.hostapp.console.kit import (
    CONSOLE_PAGE,
    Submitted,
    console_bars,
    console_blueprint,
    console_refused,
    console_submit,
)
from pelago.hostapp.console.web import _ as console_text
from pelago.hostapp.console.web import back as console_redirect
from pelago.hostapp.console.web import console_requires, render_page
from pelago.hostapp.console.web import notify as console_notice

__all__ = [
    # declaring a plugin
    "PluginSpec",
    "Periodic",
    "Job",
    "hookimpl",
    "hookspec",
    "__version__",
    # the context hooks, jobs and routes receive
    "HookContext",
    "JobContext",
    "TenantState",
    "Actor",
    "Runtime",
    "tenant_context",
    "find_tenant",
    "tenants_with",
    "pass_runtime",
    # snapshots hooks receive, and decision answers
    "LeadInfo",
    "TeamInfo",
    "UserInfo",
    "Assignment",
    "TeamChoice",
    "OwnerChoice",
    "default_intake_team",
    # events and their items
    "Event",
    "event_subscribers",
    "event_emitted",
    "LeadCreated",
    "LeadMerged",
    "LeadAssigned",
    "LeadReleased",
    "LeadStageChanged",
    "ActivityLogged",
    "DealWon",
    "DealRefunded",
    "PluginSwitched",
    "PluginSettingsChanged",
    "PersonErased",
    "erased_lead_ids",
    # errors (answered as 4xx with the standard error body)
    "PelagoError",
    "NotFound",
    "InvalidInput",
    "Conflict",
    "Forbidden",
    "Vetoed",
    # routes
    "Blueprint",
    "current_context",
    "requires",
    "commit",
    "public_route",
    "webhook_context",
    "public_session",
    "enter_tenant",
    "file_response",
    "ListArgs",
    "LocalTime",
    "MoneyString",
    "NewLeadSchema",
    "ImportDetail",
    "upload_import",
    # console pages (docs/console.md, "Adding a page")
    "ConsolePages",
    "MenuEntry",
    "DashboardPanel",
    "TimelineEntry",
    "console_blueprint",
    "CONSOLE_PAGE",
    "console_refused",
    "console_submit",
    "Submitted",
    "console_bars",
    "render_page",
    "console_requires",
    "console_redirect",
    "console_notice",
    "console_text",
    "console_form",
    # tables: the plugin's own, and the core's to read and point foreign keys at
    "Base",
    "TenantScoped",
    "tenant_key",
    "migrate_to_tenant_keys",
    "tenant_key_as_migrated",
    "BigId",
    "Money",
    "UtcDateTime",
    "JsonDoc",
    "EncryptedString",
    "Tenant",
    "Lead",
    "User",
    "Team",
    "Activity",
    "Deal",
    "Refund",
    "Import",
    "Touch",
    "StageChange",
    "STAGES",
    "ACTIVITY_KINDS",
    "ROLES",
    # database helpers
    "upsert",
    "insert_ignoring_conflict",
    "flush_or_conflict",
    "per_transaction",
    "among",
    "dialect_name",
    "conflict_key",
    # pagination and visibility
    "Page",
    "paginate",
    "encode_cursor",
    "decode_cursor",
    "MAX_LIMIT",
    "visible_leads",
    # money and time
    "to_money",
    "split_money",
    "Clock",
    "FrozenClock",
    "system_clock",
    "day_start",
    # core-owned operations: plugins change core rows only through these
    "Move",
    "Moved",
    "Taken",
    "change_owners",
    "assign_leads",
    "release_leads",
    "take_unowned",
    "explain_unowned",
    "ask_in_order",
    "first_answers",
    "refusals",
    "vetoes",
    "vetoes_needed",
    "first_veto",
    "refuse_if_vetoed",
    "Submission",
    "IntakeOutcome",
    "ingest",
    "NewActivity",
    "log_activities",
    "change_stage",
    "record_deal",
    "refund_deal",
    # calling out to URLs a tenant chose (webhooks, gateways), guarded against internal targets
    "post_json",
    "queue_post",
    "sign_body",
    "OutboundURL",
    "OutboundResponse",
    "OutboundRefused",
    # reading the core's ledgers (only the core writes them)
    "OwnershipStep",
    "ownership_history",
    "OwnerlessFlow",
    "ownerless_flows",
]
