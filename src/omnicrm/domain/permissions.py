"""Who may do what: one table from permission to the roles that hold it."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Permission(StrEnum):
    READ_PROFILE = "profile:read"
    WRITE_PROFILE = "profile:write"
    MERGE_PROFILES = "profile:merge"
    WRITE_CONSENT = "consent:write"
    MASS_UPDATE = "profile:mass-update"
    WRITE_EVENTS = "events:write"
    WRITE_INTERACTIONS = "interactions:write"
    READ_TIMELINE = "timeline:read"
    READ_AUDIT = "audit:read"
    READ_CATALOGUE = "catalogue:read"
    MANAGE_USERS = "users:manage"
    READ_SCENARIOS = "scenarios:read"
    PUBLISH_SCENARIOS = "scenarios:publish"
    READ_CAMPAIGNS = "campaigns:read"
    WRITE_CAMPAIGNS = "campaigns:write"
    APPROVE_CAMPAIGNS = "campaigns:approve"  # never one's own campaign: maker-checker
    EXPORT_PERSONAL_DATA = "personal-data:export"
    ERASE_PERSONAL_DATA = "personal-data:erase"  # ask for, or approve another's, erasure: four eyes
    READ_METRICS = "metrics:read"  # counts only, never a client's data: GET /metrics
    READ_TASKS = "tasks:read"
    WORK_TASKS = "tasks:work"  # claim a call-centre task, close one's own
    SUPERVISE_TASKS = "tasks:supervise"  # close a task another operator claimed
    READ_INBOX = "inbox:read"  # the client's internet-bank inbox
    WRITE_INBOX = "inbox:write"  # the client's own acts there: read a message, (un)subscribe a device


_ALL: Final = frozenset(Permission)
# Auditors see the audit trail but no client file; integrations write but do not browse (the internet
# bank's backend reads and marks its client's inbox); operators work call-centre tasks, admins
# supervise them; monitoring (Prometheus' token) reads the service's figures and nothing else.
ROLE_PERMISSIONS: Final[dict[str, frozenset[Permission]]] = {
    "admin": _ALL,
    "operator": frozenset(
        {
            Permission.READ_PROFILE,
            Permission.WRITE_PROFILE,
            Permission.WRITE_CONSENT,
            Permission.WRITE_INTERACTIONS,
            Permission.READ_TIMELINE,
            Permission.READ_CATALOGUE,
            Permission.READ_TASKS,
            Permission.WORK_TASKS,
            Permission.READ_INBOX,
        }
    ),
    "marketer": frozenset(
        {
            Permission.READ_PROFILE,
            Permission.MASS_UPDATE,
            Permission.READ_TIMELINE,
            Permission.READ_CATALOGUE,
            Permission.READ_SCENARIOS,
            Permission.PUBLISH_SCENARIOS,
            Permission.READ_CAMPAIGNS,
            Permission.WRITE_CAMPAIGNS,
            Permission.APPROVE_CAMPAIGNS,
        }
    ),
    "compliance": frozenset(
        {
            Permission.READ_PROFILE,
            Permission.WRITE_CONSENT,
            Permission.MERGE_PROFILES,
            Permission.READ_TIMELINE,
            Permission.READ_AUDIT,
            Permission.READ_CATALOGUE,
            Permission.READ_SCENARIOS,
            Permission.READ_CAMPAIGNS,
            Permission.APPROVE_CAMPAIGNS,
            Permission.EXPORT_PERSONAL_DATA,
            Permission.ERASE_PERSONAL_DATA,
        }
    ),
    "auditor": frozenset({Permission.READ_AUDIT, Permission.READ_CATALOGUE}),
    "integration": frozenset(
        {
            Permission.READ_PROFILE,
            Permission.WRITE_PROFILE,
            Permission.WRITE_CONSENT,
            Permission.MERGE_PROFILES,
            Permission.WRITE_EVENTS,
            Permission.WRITE_INTERACTIONS,
            Permission.READ_CATALOGUE,
            Permission.READ_INBOX,
            Permission.WRITE_INBOX,
        }
    ),
    "monitoring": frozenset({Permission.READ_METRICS}),
}


def allowed(role: str, permission: Permission) -> bool:
    """True when `role` holds `permission`."""
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
