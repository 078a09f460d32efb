"""The core's tables. Plugins add their own (``<plugin>_*``) on the same ``Base``."""

from ..db import Base, TenantScoped
from .deals import DEAL_KINDS, Deal, Refund
from .leads import (
    ACTIVITY_KINDS,
    STAGES,
    Activity,
    Lead,
    OwnershipChange,
    StageChange,
    Touch,
)
from .outbox import DELIVERY_STATES, Delivery, OutboxEvent, PeriodicRun
from .tenancy import ROLE_RANK, ROLES, ApiKey, Team, Tenant, TenantPlugin, User

__all__ = [
    "ACTIVITY_KINDS",
    "DEAL_KINDS",
    "DELIVERY_STATES",
    "ROLES",
    "ROLE_RANK",
    "STAGES",
    "Activity",
    "ApiKey",
    "Base",
    "Deal",
    "Delivery",
    "Lead",
    "OutboxEvent",
    "OwnershipChange",
    "PeriodicRun",
    "Refund",
    "StageChange",
    "Team",
    "Tenant",
    "TenantPlugin",
    "TenantScoped",
    "Touch",
    "User",
]
