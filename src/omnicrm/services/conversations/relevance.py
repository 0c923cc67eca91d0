"""Which events of a batch can matter: the people whose events may start, end or resume a
conversation (only they need facts loaded), and the scenarios each event may trigger."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import Connection

from omnicrm.domain.decision import CAMPAIGN_EVENT
from omnicrm.domain.scenarios import Condition, Library, Scenario, cel_context
from omnicrm.store import conversations

REACTION = "message.reaction"


def by_trigger(scenarios: Iterable[Scenario]) -> dict[str, list[Scenario]]:
    """Scenarios by the event type that triggers them, in their order."""
    found: dict[str, list[Scenario]] = {}
    for scenario in scenarios:
        found.setdefault(scenario.trigger_event, []).append(scenario)
    return found


def _may_trigger(
    candidates: list[tuple[Scenario, Condition | None, bool]], row: dict[str, Any]
) -> list[Scenario]:
    """The candidates whose trigger condition may hold for this event: all but those whose condition
    reads only the event (`only`) and is false on it, whoever sent it. A condition on the customer,
    or an error, keeps the candidate: the engine then decides (or fails) on the full facts."""
    context: Any = None
    kept: list[Scenario] = []
    for scenario, when, only in candidates:
        if when is not None and only:
            if context is None:  # what EventFacts.as_cel() gives
                event = {
                    "type": row["type"],
                    "channel": row["channel"] or "",
                    "attributes": dict(row["attributes"]),
                }
                context = cel_context({"event": event, "reaction": ""})  # converted once per event
            try:
                holds = when.test(context)
            except Exception:  # the engine meets the same error on the full facts, and fails as it did
                holds = True
            if not holds:
                continue
        kept.append(scenario)
    return kept


def involved(
    conn: Connection, library: Library, rows: list[dict[str, Any]], sent: dict[str, dict[str, Any]]
) -> tuple[set[str], list[list[Scenario] | None]]:
    """The people whose events in this batch may start, end or resume a conversation; only they need
    facts. Anyone else's events can change nothing but their history (which is stored already):
    their trigger conditions are false, no running conversation of theirs ends on them, and they
    answer no message of a conversation. Also, for each event, the scenarios it may trigger
    (None: a campaign event, which names its scenario)."""
    triggers = {
        kind: [
            (s, s.trigger_when, s.trigger_when is not None and s.trigger_when.reads_event_only)
            for s in scenarios
        ]
        for kind, scenarios in by_trigger(library.current.values()).items()
    }
    goal_types = {s.goal_event for s in library.versions.values()}
    found: set[str] = set()
    goals: dict[str, set[str]] = {}  # customer -> types of their events that end some scenario
    options: list[list[Scenario] | None] = []
    for row in rows:
        customer_id, kind = row["customer_id"], row["type"]
        candidates = triggers.get(kind)
        may = _may_trigger(candidates, row) if candidates else []
        options.append(None if kind == CAMPAIGN_EVENT else may)
        if customer_id in found:
            continue
        if may or kind == CAMPAIGN_EVENT:
            found.add(customer_id)
        elif kind == REACTION:
            message = sent.get(str(row["attributes"].get("message_id")))
            if message is not None and message["instance_id"] is not None:
                found.add(customer_id)
        if kind in goal_types:
            goals.setdefault(customer_id, set()).add(kind)
    waiting = set(goals) - found
    for customer_id, scenario_id, version in conversations.active_of(conn, waiting) if waiting else ():
        scenario = library.get(scenario_id, version)
        if scenario is not None and scenario.goal_event in goals[customer_id]:
            found.add(customer_id)
    return found, options
