"""The core's tables. Plugins add their own (``<plugin>_*``) on the same ``Base``."""

from ..db import Base, TenantScoped
from .console import ConsoleSession
from .deals import DEAL_KINDS, Deal, Refund
from .intake import IMPORT_STATES, SUBMISSION_STATES, Channel, Import, ImportError_, StoredSubmission
from .leads import (
    ACTIVITY_KINDS,
    STAGE_TRANSITIONS,
    STAGES,
    Activity,
    Lead,
    OwnershipChange,
    StageChange,
    Touch,
)
from .outbox import DELIVERY_STATES, POST_STATES, Delivery, OutboundPost, OutboxEvent, PeriodicRun
from .privacy import PRIVACY_ACTIONS, PrivacyAudit
from .routing import RULE_FIELDS, RoutingRule, RoutingSettings, RoutingVersion
from .tenancy import ROLE_RANK, ROLES, STRATEGIES, ApiKey, Team, Tenant, TenantPlugin, User

__all__ = [
    "ACTIVITY_KINDS",
    "DEAL_KINDS",
    "DELIVERY_STATES",
    "IMPORT_STATES",
    "PRIVACY_ACTIONS",
    "ROLES",
    "ROLE_RANK",
    "RULE_FIELDS",
    "STAGE_TRANSITIONS",
    "STAGES",
    "STRATEGIES",
    "SUBMISSION_STATES",
    "Activity",
    "ApiKey",
    "Base",
    "Channel",
    "ConsoleSession",
    "Deal",
    "Delivery",
    "Import",
    "OutboundPost",
    "POST_STATES",
    "ImportError_",
    "Lead",
    "OutboxEvent",
    "OwnershipChange",
    "PeriodicRun",
    "PrivacyAudit",
    "Refund",
    "RoutingRule",
    "RoutingSettings",
    "RoutingVersion",
    "StageChange",
    "StoredSubmission",
    "Team",
    "Tenant",
    "TenantPlugin",
    "TenantScoped",
    "Touch",
    "User",
]
