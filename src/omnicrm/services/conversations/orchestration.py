"""Decide and route: new timeline events become decisions, scenario instances and outbox rows.

Everything for one batch happens in the caller's transaction: the decisions, the instance state
and the outbox rows it causes commit together (or not at all), so a crash never loses a decision
nor sends twice. Per event, in this order: goals end the conversations they satisfy; a reaction
resumes the conversation waiting for it; then the engine decides which scenarios to start.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from omnicrm.domain.decision import CAMPAIGN_EVENT, Decision, decide
from omnicrm.domain.facts import EventFacts
from omnicrm.domain.scenarios import Library, Scenario
from omnicrm.services.conversations.batch import Batch
from omnicrm.services.conversations.facts import event_facts, forget_stored, learn, live_customers
from omnicrm.services.conversations.priority import capped, make_room
from omnicrm.services.conversations.relevance import REACTION, by_trigger, involved
from omnicrm.services.conversations.report import Report
from omnicrm.store import conversations

log = logging.getLogger(__name__)


def process_events(
    conn: Connection, rows: Iterable[dict[str, Any]], *, library: Library, now: datetime
) -> Report:
    """Handle stored timeline events (in arrival order) for goals, reactions and new decisions."""
    work = plan_events(conn, rows, library=library, now=now)
    work.flush()
    return work.report


def plan_events(
    conn: Connection, rows: Iterable[dict[str, Any]], *, library: Library, now: datetime
) -> Batch:
    """What `process_events` decides, only read on `conn`: `flush()` writes it."""
    rows = list(rows)
    message_ids = [str(r["attributes"].get("message_id")) for r in rows if r["type"] == REACTION]
    sent = conversations.outbox_by_key(conn, message_ids) if message_ids else {}
    needed, options = involved(conn, library, rows, sent)
    work = Batch(conn, library, needed, now, before=rows[0]["id"] if rows else None)
    bystanders = live_customers(conn, {r["customer_id"] for r in rows} - needed)
    handle_events(work, rows, sent, bystanders=bystanders, options=options)
    return work


def handle_events(
    work: Batch,
    rows: list[dict[str, Any]],
    sent: dict[str, dict[str, Any]] | None = None,
    *,
    bystanders: Collection[str] = (),
    options: list[list[Scenario] | None] | None = None,
) -> None:
    """The decisions, goals and reactions of these events, kept in `work` (nothing written).

    From involved(): `bystanders` are live people whose facts were not loaded because none of their
    events here can start, end or resume anything (their events are only counted), and `options`
    the scenarios each event may trigger (the others' conditions are false on it: decide() would
    drop them)."""
    library, now, sent = work.library, work.now, sent or {}
    policy, facts, report = library.policy, work.facts, work.report
    scenarios = list(library.current.values())
    triggers = by_trigger(scenarios)
    contexts: dict[str, Any] = {}  # customer id -> CEL context: profiles do not change within a batch
    forget_stored(facts, rows)
    remembered = now - timedelta(days=policy.interest_window_days)
    for at, row in enumerate(rows):
        customer_id = row["customer_id"]
        known = facts.get(customer_id)
        if known is None:
            if customer_id in bystanders:
                report.events += 1
            continue
        event = event_facts(row)
        customer = facts[customer_id] = learn(known, event, remembered, now)
        report.events += 1
        work.goals(customer, event)
        if event.type == REACTION:
            work.reaction(customer, event, sent.get(str(event.attributes.get("message_id"))))
        # decide() picks the scenarios an event triggers; handing it only those is the same, faster
        if event.type == CAMPAIGN_EVENT:
            candidates: list[Scenario] | None = scenarios
        else:
            candidates = triggers.get(event.type) if options is None else options[at]
        if not candidates:
            continue
        pretested = options is not None
        for first in decide(
            facts[customer_id], event, candidates, policy, now, contexts, pretested=pretested
        ):
            decision = _with_room(work, first, event, contexts)
            instance_id = None
            if decision.starts_conversation:
                instance_id = work.start(facts[customer_id], decision, event)
            elif decision.action == "join":
                joined = work.active.get(customer_id, {}).get(decision.scenario_id)
                instance_id = joined["id"] if joined else None
            work.record(decision, instance_id)


def _with_room(work: Batch, decision: Decision, event: EventFacts, contexts: dict[str, Any]) -> Decision:
    """A contact of service, collections or retention held back by a frequency cap takes the slot of a
    queued commercial message (priority.make_room), and is decided again with the slot free."""
    if decision.action != "delay" or not capped(decision.rules) or decision.channel is None:
        return decision
    scenario = work.library.get(decision.scenario_id, decision.scenario_version)
    if scenario is None or not make_room(
        work, decision.customer_id, scenario, decision.channel, event.event_id
    ):
        return decision
    customer = work.facts[decision.customer_id]
    again = decide(customer, event, [scenario], work.library.policy, work.now, contexts, pretested=True)
    return again[0] if again else decision


def advance_due(conn: Connection, *, library: Library, now: datetime, limit: int = 500) -> Report:
    """Move every conversation whose timer has expired: a wait times out, a held send goes out."""
    work = plan_due(conn, library=library, now=now, limit=limit)
    if work is None:
        return Report()
    work.flush()
    return work.report


def plan_due(conn: Connection, *, library: Library, now: datetime, limit: int = 500) -> Batch | None:
    """What `advance_due` would do, only read on `conn` (None: no timer is due); `flush()` writes it."""
    due = conversations.due_instances(conn, now, limit)
    if not due:
        return None
    work = Batch(conn, library, {r["customer_id"] for r in due}, now)
    handle_due(work, due)
    work.report.timers = len(due)
    return work


def handle_due(work: Batch, due: list[dict[str, Any]]) -> None:
    """Advance these expired conversations in `work` (nothing written)."""
    for row in due:
        scenario = work.library.get(row["scenario_id"], row["scenario_version"])
        customer = work.facts.get(row["customer_id"])
        live = work.active.get(row["customer_id"], {}).get(row["scenario_id"])
        if scenario is None or customer is None or live is None:
            # An unknown version or a merged profile: it cannot move. Its timer is cleared (it stays
            # active for an operator to see), or it would come back first in every round for ever.
            log.warning("conversation %s cannot move on its timer; timer cleared", row["id"])
            work.save(live or row, due_at=None)
            continue
        kind = scenario.steps[live["step"]].kind
        cause = f"timer@{live['due_at'].isoformat()}"
        work.advance(customer, scenario, live, cause=cause, reaction="" if kind == "wait" else None)
