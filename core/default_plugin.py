"""The core's own answers to its decision hooks, registered as plugin ``core``.

Every implementation is ``trylast``, so any plugin answering the same hook is
asked first and wins. Until routing rules exist for a tenant these answers are
"no opinion": a new lead stays unowned unless the caller or a plugin decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .markers import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from .context import HookContext
    from .models import Lead, Team, User
    from .routing import OwnerChoice, TeamChoice


@hookimpl(trylast=True)
def choose_team(ctx: HookContext, lead: Lead) -> TeamChoice | None:
    return None


@hookimpl(trylast=True)
def exclude_candidates(
    ctx: HookContext, lead: Lead, team: Team, candidates: Sequence[User]
) -> Mapping[int, str] | None:
    return None


@hookimpl(trylast=True)
def choose_owner(
    ctx: HookContext, lead: Lead, team: Team, candidates: Sequence[User]
) -> OwnerChoice | None:
    return None


@hookimpl(trylast=True)
def check_assign(ctx: HookContext, lead: Lead, user: User | None, reason: str) -> str | None:
    """Only active users of the tenant can own a lead."""
    if user is not None and not user.active:
        return f"user {user.id} is not active"
    return None


@hookimpl(trylast=True)
def check_stage_change(ctx: HookContext, lead: Lead, old: str, new: str) -> str | None:
    return None
