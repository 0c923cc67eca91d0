"""The campaign life cycle: allowed moves, who may make them, maker-checker, schedule and segments."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from omnicrm.domain.campaigns import (
    RULES,
    Action,
    CampaignState,
    Status,
    compile_segment,
    next_status,
)
from omnicrm.domain.errors import Conflict, Forbidden, InvalidInput
from omnicrm.domain.facts import SAMPLE_CUSTOMER

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
MAKER = "maria"
DRAFT = CampaignState("C1", Status.DRAFT, created_by=MAKER)
SUBMITTED = replace(DRAFT, status=Status.SUBMITTED, submitted_by=MAKER, dry_run_done=True)


def move(action: Action, state: CampaignState, *, actor: str = "olga", role: str = "admin") -> Status:
    return next_status(action, state, actor=actor, role=role, now=NOW)


def test_the_happy_path_runs_draft_to_running() -> None:
    assert move(Action.SUBMIT, DRAFT, actor=MAKER, role="marketer") is Status.SUBMITTED
    assert move(Action.APPROVE, SUBMITTED, actor="olga", role="compliance") is Status.APPROVED
    approved = replace(SUBMITTED, status=Status.APPROVED)
    assert move(Action.LAUNCH, approved, actor=MAKER, role="marketer") is Status.RUNNING


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("action", list(Action))
def test_every_action_is_allowed_exactly_from_its_sources(action: Action, status: Status) -> None:
    state = replace(SUBMITTED, status=status)
    if status in RULES[action].sources:
        expected = RULES[action].target or status
        assert move(action, state) is expected
    else:
        with pytest.raises(Conflict, match=f"is {status.value}: {action.value} is allowed only when"):
            move(action, state)


@pytest.mark.parametrize("status", [Status.FINISHED, Status.CANCELLED])
def test_a_finished_or_cancelled_campaign_is_final(status: Status) -> None:
    for action in Action:
        with pytest.raises(Conflict):
            move(action, replace(SUBMITTED, status=status))


@pytest.mark.parametrize("maker", ["created", "submitted"])
def test_maker_checker_nobody_approves_a_campaign_they_created_or_submitted(maker: str) -> None:
    state = replace(SUBMITTED, created_by="anna", submitted_by="boris")
    actor = "anna" if maker == "created" else "boris"
    with pytest.raises(Forbidden, match=r"maker-checker: .* may not approve it"):
        move(Action.APPROVE, state, actor=actor, role="admin")  # not even an admin
    assert move(Action.APPROVE, state, actor="carla", role="marketer") is Status.APPROVED


def test_approval_needs_a_dry_run_first() -> None:
    with pytest.raises(Conflict, match="no dry run yet"):
        move(Action.APPROVE, replace(SUBMITTED, dry_run_done=False))


@pytest.mark.parametrize(
    ("role", "action", "permitted"),
    [
        ("marketer", Action.SUBMIT, True),
        ("compliance", Action.SUBMIT, False),
        ("compliance", Action.APPROVE, True),
        ("compliance", Action.REJECT, True),
        ("compliance", Action.CANCEL, True),
        ("compliance", Action.DRY_RUN, True),
        ("compliance", Action.LAUNCH, False),
        ("operator", Action.DRY_RUN, False),
        ("operator", Action.CANCEL, False),
        ("auditor", Action.APPROVE, False),
        ("integration", Action.LAUNCH, False),
        ("nobody", Action.SUBMIT, False),
    ],
)
def test_roles(role: str, action: Action, permitted: bool) -> None:
    state = replace(SUBMITTED, status=next(iter(sorted(RULES[action].sources))))
    if permitted:
        move(action, state, role=role)
    else:
        with pytest.raises(Forbidden, match=f"role {role!r} may not {action.value}"):
            move(action, state, role=role)


def test_a_scheduled_campaign_cannot_be_launched_early() -> None:
    approved = replace(SUBMITTED, status=Status.APPROVED, starts_at=NOW + timedelta(hours=1))
    with pytest.raises(Conflict, match="scheduled for 2026-11-20T13:00:00"):
        move(Action.LAUNCH, approved)
    assert move(Action.LAUNCH, replace(approved, starts_at=NOW)) is Status.RUNNING


def test_a_failed_launch_may_be_launched_again() -> None:
    assert move(Action.LAUNCH, replace(SUBMITTED, status=Status.FAILED)) is Status.RUNNING


def test_a_segment_is_compiled_and_test_run() -> None:
    segment = compile_segment('customer.status == "client" && products.exists(p, p["class"] == "card")')
    context = {**SAMPLE_CUSTOMER.as_cel(), "event": {}, "reaction": ""}
    assert segment.test(context) is True


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("customer.status ==", "Syntax error"),
        ('customr.status == "client"', "Undefined variable"),
        ("customer.tier == 1", "KeyError"),
        ("customer.status", "not true/false"),
        ('products[3].state == "active"', "IndexError"),
    ],
)
def test_a_bad_segment_is_refused_with_the_reason(source: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        compile_segment(source)
    assert [e.field for e in caught.value.errors] == ["segment"]
    assert reason in caught.value.errors[0].reason
