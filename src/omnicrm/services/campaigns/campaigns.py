"""Campaigns: create, maker-checker approval and dry run (the launch is in campaign_launch.py).

A launch writes one `crm.campaign.targeted` event per member of the segment through the ordinary
ingest path (event id `campaign:{campaign}:{customer}`, so a resumed launch writes nothing twice);
the decision worker then decides and starts the conversations, with every hard rule still applied.
The dry run asks the same engine what it would do, without writing anything but its summary.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AwareDatetime, StringConstraints
from sqlalchemy.engine import Connection

from omnicrm.domain.campaigns import (
    RULES,
    Action,
    CampaignState,
    Status,
    campaign_event,
    compile_segment,
    next_status,
)
from omnicrm.domain.decision import CAMPAIGN_EVENT, decide
from omnicrm.domain.errors import Conflict, InvalidInput, ItemError, NotFound
from omnicrm.domain.facts import CustomerFacts, EventFacts
from omnicrm.domain.policy import Policy
from omnicrm.domain.scenarios import Condition, Library, Scenario
from omnicrm.services.contracts import Strict
from omnicrm.services.conversations.facts import load_facts
from omnicrm.services.profiles.identity import new_customer_id
from omnicrm.store import audit
from omnicrm.store import campaigns as store
from omnicrm.store.uow import UnitOfWork

log = logging.getLogger(__name__)
PAGE = 2_000  # customers whose facts are loaded at once
STALE = timedelta(minutes=2)  # a running launch untouched this long belongs to a dead process
Clock = Callable[[], datetime]
Uow = Callable[[], UnitOfWork]


def wall_clock() -> datetime:
    return datetime.now(UTC)


class CampaignIn(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200)]
    scenario_id: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,63}$")]
    segment: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    starts_at: AwareDatetime | None = None


class CampaignPatch(Strict):
    """Changes to a draft; fields left out stay as they are."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200)] | None = None
    scenario_id: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,63}$")] | None = None
    segment: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)] | None
    ) = None
    starts_at: AwareDatetime | None = None


# --- reading -------------------------------------------------------------------------------------
def row_of(conn: Connection, campaign_id: str) -> dict[str, Any]:
    row = store.get(conn, campaign_id)
    if row is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    return row


def state_of(row: dict[str, Any]) -> CampaignState:
    return CampaignState(
        row["id"],
        Status(row["status"]),
        row["created_by"],
        row["submitted_by"],
        row["starts_at"],
        dry_run_done=row["dry_run"] is not None,
    )


def get(conn: Connection, campaign_id: str) -> dict[str, Any]:
    """The campaign with its history (who created, submitted, approved, rejected, launched it)."""
    row = row_of(conn, campaign_id)
    entries = audit.entries(conn, action=None, target=campaign_id, before_id=None, limit=100)
    row["history"] = [
        {"at": e["at"], "actor": e["actor"], "action": e["action"], "details": e["details"]}
        for e in reversed(entries)
        if e["action"].startswith("campaign.")
    ]
    return row


def list_campaigns(
    conn: Connection, *, status: Status | None = None, before: str | None = None, limit: int = 50
) -> dict[str, Any]:
    """Newest first; pass the last id as `before` for the next page."""
    items = store.page(conn, status=status, before=before, limit=limit)
    return {"items": items, "next": items[-1]["id"] if len(items) == limit else None}


# --- the life cycle ------------------------------------------------------------------------------
def scenario_of(library: Library, scenario_id: str) -> Scenario:
    scenario = library.current.get(scenario_id)
    if scenario is None:
        raise Conflict(f"scenario {scenario_id!r} is no longer in the library")
    return scenario


def _check(library: Library, scenario_id: str | None, segment: str | None) -> None:
    """An unknown scenario or a segment that does not compile or run is refused (422), all at once."""
    errors: list[ItemError] = []
    if scenario_id is not None and scenario_id not in library.current:
        known = ", ".join(sorted(library.current)[:5])
        errors.append(ItemError(None, "scenario_id", f"no scenario {scenario_id!r} (e.g. {known})"))
    if segment is not None:
        try:
            compile_segment(segment)
        except InvalidInput as exc:
            errors.extend(exc.errors)
    if errors:
        raise InvalidInput("the campaign was refused; nothing was written", errors)


def create(
    conn: Connection, body: CampaignIn, *, library: Library, actor: str, now: datetime
) -> dict[str, Any]:
    """A new draft; an unknown scenario or a segment that does not compile or run is refused (422)."""
    _check(library, body.scenario_id, body.segment)
    campaign_id = new_customer_id()
    store.insert_campaign(
        conn,
        {
            **body.model_dump(),
            "id": campaign_id,
            "status": Status.DRAFT.value,
            "created_by": actor,
            "processed": 0,
            "created_at": now,
            "updated_at": now,
        },
    )
    details = {**body.model_dump(exclude={"starts_at"}), "starts_at": _iso(body.starts_at)}
    audit.append(conn, at=now, actor=actor, action="campaign.created", target=campaign_id, details=details)
    return get(conn, campaign_id)


def edit(
    conn: Connection,
    campaign_id: str,
    body: CampaignPatch,
    *,
    library: Library,
    actor: str,
    role: str,
    now: datetime,
) -> dict[str, Any]:
    """Change a draft; its dry run is dropped (it no longer describes the campaign), so approval
    needs a new one."""
    row = row_of(conn, campaign_id)
    next_status(Action.EDIT, state_of(row), actor=actor, role=role, now=now)
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise InvalidInput("nothing to change", [ItemError(None, "body", "give at least one field")])
    _check(library, changes.get("scenario_id"), changes.get("segment"))
    values = {**changes, "dry_run": None, "audience": None, "updated_at": now}
    if not store.move(conn, campaign_id, expected=[Status.DRAFT.value], values=values):
        raise Conflict(f"campaign {campaign_id} changed meanwhile; read it again")
    details = {k: _iso(v) if isinstance(v, datetime) else v for k, v in changes.items()}
    audit.append(conn, at=now, actor=actor, action="campaign.edit", target=campaign_id, details=details)
    return get(conn, campaign_id)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _transition(
    conn: Connection,
    campaign_id: str,
    action: Action,
    *,
    actor: str,
    role: str,
    now: datetime,
    values: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    row = row_of(conn, campaign_id)
    target = next_status(action, state_of(row), actor=actor, role=role, now=now)
    changes = {"status": target.value, "updated_at": now, **(values or {})}
    if not store.move(conn, campaign_id, expected=[row["status"]], values=changes):
        raise Conflict(f"campaign {campaign_id} changed meanwhile; read it again")
    audit.append(
        conn,
        at=now,
        actor=actor,
        action=f"campaign.{action.value}",
        target=campaign_id,
        details={"from": row["status"], "to": target.value, **(details or {})},
    )
    return get(conn, campaign_id)


def submit(conn: Connection, campaign_id: str, *, actor: str, role: str, now: datetime) -> dict[str, Any]:
    """draft -> submitted: the maker asks for approval."""
    values = {"submitted_by": actor}
    return _transition(conn, campaign_id, Action.SUBMIT, actor=actor, role=role, now=now, values=values)


def approve(conn: Connection, campaign_id: str, *, actor: str, role: str, now: datetime) -> dict[str, Any]:
    """submitted -> approved, by someone who neither created nor submitted it, after a dry run."""
    values = {"approved_by": actor}
    return _transition(conn, campaign_id, Action.APPROVE, actor=actor, role=role, now=now, values=values)


def reject(
    conn: Connection, campaign_id: str, *, reason: str, actor: str, role: str, now: datetime
) -> dict[str, Any]:
    """submitted or approved -> draft, with the reason in the history."""
    return _transition(
        conn,
        campaign_id,
        Action.REJECT,
        actor=actor,
        role=role,
        now=now,
        values={"submitted_by": None, "approved_by": None},
        details={"reason": reason},
    )


def cancel(
    conn: Connection, campaign_id: str, *, reason: str, actor: str, role: str, now: datetime
) -> dict[str, Any]:
    """Stop a campaign for good; a running launch stops after the batch it is writing."""
    return _transition(
        conn,
        campaign_id,
        Action.CANCEL,
        actor=actor,
        role=role,
        now=now,
        values={"finished_at": now},
        details={"reason": reason},
    )


# --- who is in the segment -----------------------------------------------------------------------
def _targeted(campaign_id: str, scenario_id: str, customer_id: str, at: datetime) -> EventFacts:
    attributes = {"campaign_id": campaign_id, "scenario_id": scenario_id}
    return EventFacts(f"campaign:{campaign_id}:{customer_id}", CAMPAIGN_EVENT, at, None, attributes)


def in_segment(segment: Condition, customer: CustomerFacts, event: dict[str, Any]) -> bool | None:
    """True or False, or None when the segment cannot run on this profile (counted, never targeted)."""
    try:
        return segment.test({**customer.as_cel(), "event": event, "reaction": ""})
    except (ValueError, RuntimeError, KeyError, TypeError, IndexError):
        return None


@contextmanager
def reading(uow: Uow) -> Iterator[Connection]:
    """A read-only connection on the unit of work's engine: on SQLite it takes no write lock, so
    reading 18,000 profiles never holds up the API's writers."""
    with uow().engine.connect() as conn:
        yield conn


def pages(uow: Uow, policy: Policy, now: datetime, beat: Callable[[], bool]) -> Iterator[list[CustomerFacts]]:
    """The facts of every live customer, PAGE at a time, each page read in its own short transaction.

    `beat` runs between pages; when it returns False (the campaign was cancelled) the walk stops."""
    after: str | None = None
    while beat():
        with reading(uow) as conn:
            ids = store.live_customer_ids(conn, after=after, limit=PAGE)
            facts = load_facts(conn, ids, now=now, policy=policy) if ids else {}
        if not ids:
            return
        after = ids[-1]
        yield [facts[i] for i in ids if i in facts]


# --- dry run ---------------------------------------------------------------------------------------
def dry_run(
    uow: Uow, campaign_id: str, *, library: Library, actor: str, role: str, now: datetime
) -> dict[str, Any]:
    """What a launch now would do: audience, contacts, delays, escalations, suppressions by reason.

    Nothing is written but this summary on the campaign."""
    with reading(uow) as conn:
        row = row_of(conn, campaign_id)
    next_status(Action.DRY_RUN, state_of(row), actor=actor, role=role, now=now)
    scenario = scenario_of(library, row["scenario_id"])
    segment = compile_segment(row["segment"])
    summary = _simulate(uow, campaign_id, scenario, segment, library.policy, now)
    with uow() as work:
        allowed = RULES[Action.DRY_RUN].sources
        if not store.move(work.conn, campaign_id, expected=allowed, values={"dry_run": summary}):
            raise Conflict(f"campaign {campaign_id} moved on during the dry run; nothing was saved")
        work.commit()
    return summary


def _simulate(
    uow: Uow, campaign_id: str, scenario: Scenario, segment: Condition, policy: Policy, now: datetime
) -> dict[str, Any]:
    actions: Counter[str] = Counter()
    suppressed: Counter[str] = Counter()
    channels: Counter[str] = Counter()
    population = errors = 0
    event = campaign_event(campaign_id, scenario.id)
    for page in pages(uow, policy, now, lambda: True):
        for customer in page:
            population += 1
            member = in_segment(segment, customer, event)
            errors += member is None
            if not member:
                continue
            actions["audience"] += 1
            targeted = _targeted(campaign_id, scenario.id, customer.id, now)
            for decision in decide(customer, targeted, [scenario], policy, now):
                actions[decision.action] += 1
                if decision.action == "suppress":
                    suppressed[next(r.rule for r in decision.rules if r.effect == "suppress")] += 1
                elif decision.starts_conversation and decision.channel:
                    channels[decision.channel] += 1
    return {
        "audience": actions["audience"],
        "would_contact": actions["contact"],
        "would_delay": actions["delay"],
        "would_escalate": actions["escalate"],
        "would_join": actions["join"],
        "suppressed": dict(sorted(suppressed.items())),
        "channels": dict(sorted(channels.items())),
        "population": population,
        "segment_errors": errors,
        "scenario": scenario.key,
        "policy_version": policy.version,
        "computed_at": now.isoformat(),
    }
