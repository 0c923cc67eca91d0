"""Campaigns: a segment of clients, a scenario to run for them, and a maker-checker life cycle.

draft (editable) -> submitted -> approved (by someone else) -> running -> finished; a checker may reject a
submitted or approved campaign back to draft; anything not finished may be cancelled; a launch that
failed may be launched again (it resumes: every event it writes is idempotent). Pure: the services
pass the stored state, the caller and the clock in, and get the next status or a clear error back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from omnicrm.domain.decision import CAMPAIGN_EVENT
from omnicrm.domain.errors import Conflict, Forbidden, InvalidInput, ItemError
from omnicrm.domain.facts import SAMPLE_CUSTOMER
from omnicrm.domain.permissions import Permission, allowed
from omnicrm.domain.scenarios import Condition, compile_condition


class Status(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Action(StrEnum):
    EDIT = "edit"
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    CANCEL = "cancel"
    DRY_RUN = "dry-run"
    LAUNCH = "launch"


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may take an action (any of `permissions`), from which states, and where it leads."""

    sources: frozenset[Status]
    target: Status | None  # None: the status does not change
    permissions: frozenset[Permission]


S, P = Status, Permission
_WRITE, _APPROVE = frozenset({P.WRITE_CAMPAIGNS}), frozenset({P.APPROVE_CAMPAIGNS})
RULES: dict[Action, Rule] = {
    Action.EDIT: Rule(frozenset({S.DRAFT}), None, _WRITE),
    Action.SUBMIT: Rule(frozenset({S.DRAFT}), S.SUBMITTED, _WRITE),
    Action.APPROVE: Rule(frozenset({S.SUBMITTED}), S.APPROVED, _APPROVE),
    Action.REJECT: Rule(frozenset({S.SUBMITTED, S.APPROVED}), S.DRAFT, _APPROVE),
    Action.CANCEL: Rule(
        frozenset({S.DRAFT, S.SUBMITTED, S.APPROVED, S.RUNNING, S.FAILED}), S.CANCELLED, _WRITE | _APPROVE
    ),
    Action.DRY_RUN: Rule(frozenset({S.DRAFT, S.SUBMITTED, S.APPROVED}), None, _WRITE | _APPROVE),
    Action.LAUNCH: Rule(frozenset({S.APPROVED, S.FAILED}), S.RUNNING, _WRITE),
}


@dataclass(frozen=True, slots=True)
class CampaignState:
    """What the rules need to know about a stored campaign."""

    id: str
    status: Status
    created_by: str
    submitted_by: str | None = None
    starts_at: dt.datetime | None = None
    dry_run_done: bool = False


def next_status(
    action: Action, campaign: CampaignState, *, actor: str, role: str, now: dt.datetime
) -> Status:
    """The status `action` leads to; Forbidden (who) or Conflict (state) with a clear message."""
    rule = RULES[action]
    if not any(allowed(role, p) for p in rule.permissions):
        needed = " or ".join(sorted(p.value for p in rule.permissions))
        raise Forbidden(f"role {role!r} may not {action.value} a campaign (needs {needed})")
    if campaign.status not in rule.sources:
        sources = ", ".join(sorted(rule.sources))
        raise Conflict(
            f"campaign {campaign.id} is {campaign.status.value}: "
            f"{action.value} is allowed only when it is {sources}"
        )
    if action is Action.APPROVE:
        if actor in (campaign.created_by, campaign.submitted_by):
            raise Forbidden(
                f"maker-checker: {actor} created or submitted campaign {campaign.id} and may not approve it;"
                " another user holding campaigns:approve must"
            )
        if not campaign.dry_run_done:
            raise Conflict(f"campaign {campaign.id} has no dry run yet: run one before approving it")
    if action is Action.LAUNCH and campaign.starts_at is not None and campaign.starts_at > now:
        raise Conflict(
            f"campaign {campaign.id} is scheduled for {campaign.starts_at.isoformat()}; "
            "it is launched by itself at that time"
        )
    return rule.target or campaign.status


def campaign_event(campaign_id: str, scenario_id: str) -> dict[str, Any]:
    """The CEL `event` variable a segment and the scenario's audience see for a campaign."""
    return {
        "type": CAMPAIGN_EVENT,
        "channel": "",
        "attributes": {"campaign_id": campaign_id, "scenario_id": scenario_id},
    }


def compile_segment(source: str) -> Condition:
    """Compile a segment (CEL, written like a scenario `audience`) and test-run it on a sample client.

    Raises InvalidInput naming the problem, so a typo is refused at creation, not met at launch."""
    try:
        condition = compile_condition(source)
    except ValueError as exc:
        raise InvalidInput(
            "the segment is not a valid CEL expression", [ItemError(None, "segment", str(exc))]
        ) from None
    assert condition is not None
    context = {**SAMPLE_CUSTOMER.as_cel(), "event": campaign_event("sample", "sample"), "reaction": ""}
    try:
        condition.test(context)
    except (ValueError, RuntimeError, KeyError, TypeError, IndexError) as exc:
        reason = f"cannot run on a sample client ({type(exc).__name__}: {exc}); the segment sees customer.*"
        reason += " (id, status, value_tier, language, segments, vulnerable, open_complaints) and products"
        raise InvalidInput("the segment cannot be evaluated", [ItemError(None, "segment", reason)]) from None
    return condition
