"""Hooks ``sms_nurture`` declares for provider plugins (registered through ``PluginSpec.hookspecs``).

Decision-style: called synchronously with ``ctx.hooks.<name>(...)``, by
keyword, for the plugins on for the tenant. Every provider implements all four
and answers ``None`` when ``provider`` is not its name; the first answer that
is not ``None`` counts. ``sms_nurture`` ships ``log`` and ``http``
(:mod:`.providers`); docs/plugins/sms_nurture.md has the contract and an example.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pelago.plugin import hookspec

if TYPE_CHECKING:  # pragma: no cover
    from pelago.plugin import HookContext


@dataclass(frozen=True)
class OutgoingSms:
    """One message to send (or to ask about): ``our_id`` is its idempotency key, unique per tenant and step."""

    our_id: str
    phone: str
    text: str
    lead_id: int
    planned_at: datetime
    claimed_at: datetime
    template_id: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    signature: str = ""


@dataclass(frozen=True)
class WebhookRequest:
    """A provider's call to our webhook, as received: lower-cased headers, the raw body, the query."""

    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str]
    url: str


@hookspec
def sms_nurture_send(
    ctx: HookContext, provider: str, messages: Sequence[OutgoingSms]
) -> Sequence[Mapping[str, Any]] | None:
    """Send ``messages``; one answer per message: ``{our_id, status, provider_id, error}``."""


@hookspec
def sms_nurture_query(
    ctx: HookContext, provider: str, messages: Sequence[OutgoingSms]
) -> Mapping[str, Mapping[str, Any]] | None:
    """What the provider knows of each message, by ``our_id``: ``{status, provider_id, error}``."""


@hookspec
def sms_nurture_parse_receipt(
    ctx: HookContext, provider: str, request: WebhookRequest
) -> Sequence[Mapping[str, Any]] | None:
    """Check a receipt webhook's signature and read it: ``[{our_id | provider_id, status, at, error}]``."""


@hookspec
def sms_nurture_parse_inbound(
    ctx: HookContext, provider: str, request: WebhookRequest
) -> Sequence[Mapping[str, Any]] | None:
    """Check an inbound webhook's signature and read it: ``[{phone, text, at}]``."""
