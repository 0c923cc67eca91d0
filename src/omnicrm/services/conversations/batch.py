"""The working set of one batch of events or timers: the facts of the people involved, kept current
as each event is handled, and the rows (decisions, conversation state, outbox) to write at the end
in a handful of bulk statements (`flush`)."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from omnicrm.domain.decision import Decision
from omnicrm.domain.facts import Contact, CustomerFacts, EventFacts, InstanceFacts
from omnicrm.domain.lifecycle import QUEUED, WITHDRAWN
from omnicrm.domain.router import HANDOVER_QUEUE, Advance, Effect, run
from omnicrm.domain.rules import StepVerdict, step_verdict
from omnicrm.domain.scenarios import Library, Scenario, Step
from omnicrm.services.conversations import priority
from omnicrm.services.conversations.facts import CONTACT_MEMORY_DAYS, load_facts
from omnicrm.services.conversations.priority import Queued, capped
from omnicrm.services.conversations.report import Report
from omnicrm.services.profiles.identity import new_customer_id as new_instance_id
from omnicrm.store import conversations

log = logging.getLogger(__name__)

# Delivery reports say where a message is, not what the client did: they never resume a wait.
STATUS_REPORTS = frozenset({"delivered"})
# A step held, skipped or cancelled is stored as a decision about that step, with these actions.
STEP_ACTIONS = {"held": "hold", "skipped": "skip", "cancelled": "cancel"}


class Batch:
    """The working set of one batch: facts kept current as events are handled, rows to write."""

    def __init__(
        self,
        conn: Connection,
        library: Library,
        customer_ids: set[str],
        now: datetime,
        instances: list[dict[str, Any]] | None = None,
        until: datetime | None = None,
        before: int | None = None,
    ) -> None:
        """`instances` replaces the stored conversations of these customers and `until` hides events
        and contacts after it (a what-if replay on a simulated clock); `before` hides events stored
        from that primary key on (the batch's first event: each is added back as it is handled)."""
        self.conn, self.library, self.now = conn, library, now
        rows = conversations.instances_of(conn, customer_ids) if instances is None else instances
        self.facts = load_facts(
            conn, customer_ids, now=now, policy=library.policy, instance_rows=rows, until=until, before=before
        )
        # customer id -> scenario id -> the active instance row (at most one, enforced by an index)
        self.active: dict[str, dict[str, dict[str, Any]]] = {}
        for row in rows:
            if row["status"] == "active":
                self.active.setdefault(row["customer_id"], {})[row["scenario_id"]] = row
        # instance id -> contacts of its messages not sent yet, which its goal withdraws: they must
        # stop counting towards the caps at once, as they do in the next batch (read from the outbox)
        self.withdrawable: dict[str, list[Contact]] = defaultdict(list)
        # customer -> queued messages of running conversations: one of higher priority held by a cap
        # may take the slot of a lower one (`make_room`)
        self.queued: dict[str, list[Queued]] = defaultdict(list)
        if self.active:
            since = now - timedelta(days=CONTACT_MEMORY_DAYS)
            for instance_id, channel, purpose, at, key, owner in conversations.pending_contacts(
                conn, self.active, since, until
            ):
                self.withdrawable[instance_id].append((channel, purpose, at))
                self.queued[owner].append(Queued(key, instance_id, channel, purpose, at))
        self.yielded: dict[str, str] = {}  # stored messages that gave up their slot -> why
        self.decisions: list[dict[str, Any]] = []
        self.new: dict[str, dict[str, Any]] = {}  # instances started in this batch (inserted at flush)
        self.changed: dict[str, dict[str, Any]] = {}  # existing instances whose state moved
        self.messages: list[dict[str, Any]] = []
        self.withdrawn: dict[str, str] = {}  # instance -> why its queued messages are withdrawn
        self.report = Report()
        self._prepared: conversations.BatchWrite | None = None

    def save(self, row: dict[str, Any], **values: Any) -> None:
        row.update(values, updated_at=self.now)
        if row["id"] not in self.new:
            self.changed[row["id"]] = row

    def prepare(self) -> None:
        """Put everything the batch decided in stored form, without touching the database: done
        before the write lock is taken, the lock is held only for the statements (`flush`). The
        batch must not change between the two."""
        self._prepared = self._stored()

    def flush(self, conn: Connection | None = None) -> None:
        """Write everything the batch decided, in a handful of bulk statements (on `conn`, a later
        transaction than the one it read in, if given); prepared here unless `prepare` just did."""
        prepared, self._prepared = self._prepared or self._stored(), None
        if conn is not None:
            self.conn = conn
        conversations.write_batch(self.conn, prepared)

    def _stored(self) -> conversations.BatchWrite:
        for message in self.messages:
            if (reason := self.withdrawn.get(message["instance_id"])) is not None:
                message.update(status=WITHDRAWN, status_reason=reason, status_at=self.now)
        ended = {i: r for i, r in self.withdrawn.items() if i not in self.new}
        # each was saved (finish), so its owner is known
        owners = (
            {self.changed[i]["customer_id"] for i in ended} if ended.keys() <= self.changed.keys() else None
        )
        return conversations.prepare_batch(
            self.conn.dialect,
            new=list(self.new.values()),
            moved=list(self.changed.values()),
            messages=self.messages,
            decided=self.decisions,
            ended=ended,
            ended_by=owners,
            now=self.now,
            yielded=self.yielded,
        )

    def context(self, customer: CustomerFacts, event: EventFacts | None) -> dict[str, Any]:
        return {
            **customer.as_cel(),
            "event": event.as_cel() if event else {"type": "", "channel": "", "attributes": {}},
        }

    # --- goals and reactions ------------------------------------------------------------------
    def goals(self, customer: CustomerFacts, event: EventFacts) -> None:
        for scenario_id, row in list(self.active.get(customer.id, {}).items()):
            scenario = self.library.get(scenario_id, row["scenario_version"])
            if scenario is None or scenario.goal_event != event.type:
                continue
            context = {**self.context(customer, event), "reaction": ""}
            if scenario.goal_when is None or scenario.goal_when.test(context):
                self.finish(customer, row, "goal_reached", goal=True, why=f"goal reached: {event.type}")

    def reaction(self, customer: CustomerFacts, event: EventFacts, sent: dict[str, Any] | None) -> None:
        if sent is None or sent["instance_id"] is None:
            return
        row = next(
            (r for r in self.active.get(customer.id, {}).values() if r["id"] == sent["instance_id"]), None
        )
        scenario = self.library.get(row["scenario_id"], row["scenario_version"]) if row else None
        if row is None or scenario is None or scenario.steps[row["step"]].kind != "wait":
            return  # the conversation moved on: a second, parallel reaction joins it without forking
        awaited = row.get("awaiting")
        if awaited is not None and sent["idempotency_key"] not in awaited:
            return  # a reaction to an earlier message: the wait it answered has moved on already
        reaction = str(event.attributes.get("reaction", ""))
        if reaction in STATUS_REPORTS:
            return  # the message arrived: the client has not reacted yet, the wait goes on
        self.save(row, last_reaction=reaction[:16])
        self.advance(customer, scenario, row, cause=event.event_id, reaction=reaction, event=event)

    def finish(
        self,
        customer: CustomerFacts,
        row: dict[str, Any],
        outcome: str,
        *,
        goal: bool = False,
        why: str | None = None,
        status: str = "completed",
    ) -> None:
        """End a conversation. With `why` (a reached goal, a hard rule that cancelled it) the messages
        it still has queued are withdrawn with that reason; a conversation that simply ran to its end
        leaves its queued messages to go out."""
        self.save(
            row,
            status=status,
            outcome=outcome,
            goal_reached=goal,
            due_at=None,
            ended_at=self.now,
            awaiting=None,
        )
        if why is not None:
            self.withdrawn[row["id"]] = why[:300]
            self.withdraw_contacts(customer.id, self.withdrawable.pop(row["id"], []))
        self.active.get(row["customer_id"], {}).pop(row["scenario_id"], None)
        self._remember(customer, row, status=status, goal=goal)
        self.report.completed += 1

    # --- starting and moving conversations -----------------------------------------------------
    def start(self, customer: CustomerFacts, decision: Decision, event: EventFacts) -> str | None:
        scenario = self.library.get(decision.scenario_id, decision.scenario_version)
        if scenario is None:
            return None
        row: dict[str, Any] = {
            "customer_id": customer.id,
            "scenario_id": scenario.id,
            "scenario_version": scenario.version,
            "purpose": scenario.purpose,
            "status": "active",
            "step": scenario.start,
            "due_at": decision.due_at if decision.action == "delay" else None,
            "trigger_event_id": event.event_id,
            "last_reaction": None,
            "outcome": None,
            "goal_reached": False,
            "started_at": self.now,
            "updated_at": self.now,
            "ended_at": None,
            "awaiting": None,
        }
        row["id"] = new_instance_id()
        self.new[row["id"]] = row
        self.active.setdefault(customer.id, {})[scenario.id] = row
        self._remember(customer, row, status="active")
        self.report.started += 1
        if decision.action == "escalate":
            handover = Effect(
                "task",
                "handover",
                "callcentre",
                queue=HANDOVER_QUEUE,
                note="; ".join(r.detail for r in decision.rules if r.effect == "human"),
            )
            self.write_effects(customer, scenario, row, [handover], cause=event.event_id)
            self.finish(customer, row, "handed_to_person")
        elif decision.action == "contact":
            self.advance(customer, scenario, row, cause=event.event_id, event=event)
        instance_id: str = row["id"]
        return instance_id

    def advance(
        self,
        customer: CustomerFacts,
        scenario: Scenario,
        row: dict[str, Any],
        *,
        cause: str,
        reaction: str | None = None,
        event: EventFacts | None = None,
    ) -> None:
        """Run the conversation from its step; every send and escalation is checked against the hard
        rules first (domain/rules.step_verdict), and every hold, skip and cancellation is stored."""
        customer = self.facts[customer.id]
        policy, now = self.library.policy, self.now
        trigger = self._trigger(customer, row)

        def check(name: str, step: Step, channel: str, earlier: tuple[str, ...]) -> StepVerdict:
            kind = "send" if step.kind == "send" else "escalate"

            def verdict() -> StepVerdict:
                facts = self.facts[customer.id]  # a slot given up just now shows in the contacts
                return step_verdict(
                    scenario, facts, trigger, now, policy, kind=kind, channel=channel, earlier=earlier
                )

            found = verdict()
            held = found.effect == "hold" and capped(found.outcomes)
            if held and priority.make_room(self, customer.id, scenario, channel, cause, earlier):
                found = verdict()
            return found

        outcome: Advance = run(
            scenario,
            row["step"],
            now=now,
            context=self.context(customer, event),
            check=check,
            reaction=reaction,
        )
        keys = self.write_effects(customer, scenario, row, list(outcome.effects), cause=cause)
        if outcome.status != "active":
            self.save(row, step=outcome.step)
            if outcome.status == "cancelled":
                self.report.cancelled += 1
                why = outcome.effects[-1].note if outcome.effects else (outcome.outcome or "cancelled")
                goal = outcome.outcome == "goal_reached"
                self.finish(
                    customer, row, outcome.outcome or "cancelled", goal=goal, why=why, status="cancelled"
                )
            else:
                self.finish(customer, row, outcome.outcome or "finished")
            return
        # the messages the wait it stands at now follows (only they move it when answered)
        new = [k for k in keys[outcome.since_wait :] if k is not None]
        awaiting = new if outcome.fresh else [*(row.get("awaiting") or ()), *new]
        self.save(row, step=outcome.step, due_at=outcome.due_at, awaiting=awaiting or None)

    def _trigger(self, customer: CustomerFacts, row: dict[str, Any]) -> EventFacts:
        """The event that started a conversation, as the goal rule reads it: from the person's recent
        history, or (older than the interest window) a stand-in dated when the conversation started."""
        wanted = row["trigger_event_id"]
        found = next((e for e in reversed(customer.recent_events) if e.event_id == wanted), None)
        return found or EventFacts(wanted, "", row["started_at"], None, {})

    def write_effects(
        self,
        customer: CustomerFacts,
        scenario: Scenario,
        row: dict[str, Any],
        effects: list[Effect],
        *,
        cause: str,
    ) -> list[str | None]:
        """Queue the messages and tasks among `effects` and store the steps held, skipped or cancelled;
        returns each effect's message key (None for a step that queued nothing)."""
        rows: list[dict[str, Any]] = []
        keys: list[str | None] = []
        for effect in effects:
            if not effect.contacts:
                self.note_step(scenario, row, effect, cause)
                keys.append(None)
                continue
            key = f"{row['id']}:{cause}:{effect.step}"
            keys.append(key)
            rows.append(
                {
                    "idempotency_key": key,
                    "customer_id": customer.id,
                    "instance_id": row["id"],
                    "kind": "message" if effect.kind == "send" else "task",
                    "channel": effect.channel,
                    "template": effect.template,
                    "purpose": scenario.purpose,
                    "status": QUEUED,
                    "available_at": self.now,
                    "created_at": self.now,
                    "status_reason": None,
                    "status_at": None,
                    "payload": {
                        "message_id": key,
                        "scenario": scenario.key,
                        "step": effect.step,
                        "language": customer.language or "uk",
                        "queue": effect.queue,
                        "note": effect.note,
                    },
                }
            )
            if effect.kind == "send":
                self.report.messages += 1
            else:
                self.report.tasks += 1
        self.messages.extend(rows)
        self.queued[customer.id].extend(
            Queued(r["idempotency_key"], row["id"], r["channel"], r["purpose"], self.now) for r in rows
        )
        contacts = tuple((r["channel"], r["purpose"], self.now) for r in rows)
        self.withdrawable[row["id"]].extend(contacts)
        self.facts[customer.id] = self.facts[customer.id].evolve(
            contacts=self.facts[customer.id].contacts + contacts
        )
        return keys

    def note_step(self, scenario: Scenario, row: dict[str, Any], effect: Effect, cause: str) -> None:
        """A step held, skipped or cancelled, stored as a decision about that step with its rules."""
        if effect.kind == "skipped":
            self.report.skipped += 1
        elif effect.kind == "held":
            self.report.held += 1
        self.decisions.append(
            {
                "customer_id": row["customer_id"],
                "scenario_id": scenario.id,
                "scenario_version": scenario.version,
                "purpose": scenario.purpose,
                "event_id": cause,
                "action": STEP_ACTIONS[effect.kind],
                "channel": effect.channel,
                "due_at": effect.until,
                "rules": [{"rule": r.rule, "effect": r.effect, "detail": r.detail} for r in effect.rules],
                "score": {},
                "total": 0.0,
                "policy_version": self.library.policy.version,
                "arbitration": "",
                "instance_id": row["id"],
                "decided_at": self.now,
                "step": effect.step,
            }
        )

    def withdraw_contacts(self, customer_id: str, withdrawn: list[Contact]) -> None:
        """Forget contacts that will never be made (one counted contact per withdrawn message)."""
        if not withdrawn:
            return
        kept = list(self.facts[customer_id].contacts)
        for contact in withdrawn:
            if contact in kept:
                kept.remove(contact)
        self.facts[customer_id] = self.facts[customer_id].evolve(contacts=tuple(kept))

    def _remember(
        self, customer: CustomerFacts, row: dict[str, Any], *, status: str, goal: bool = False
    ) -> None:
        current = self.facts[customer.id]
        others = tuple(
            i for i in current.instances if i.scenario_id != row["scenario_id"] or i.status != "active"
        )
        mine = InstanceFacts(
            row["scenario_id"],
            row["scenario_version"],
            row["purpose"],
            status,
            row["started_at"],
            self.now if status != "active" else None,
            goal,
        )
        self.facts[customer.id] = current.evolve(instances=(*others, mine))

    def record(self, decision: Decision, instance_id: str | None) -> None:
        self.decisions.append(
            {
                "customer_id": decision.customer_id,
                "scenario_id": decision.scenario_id,
                "scenario_version": decision.scenario_version,
                "purpose": decision.purpose,
                "event_id": decision.event_id,
                "action": decision.action,
                "channel": decision.channel,
                "due_at": decision.due_at,
                "rules": [{"rule": r.rule, "effect": r.effect, "detail": r.detail} for r in decision.rules],
                "score": decision.score,
                "total": decision.total,
                "policy_version": decision.policy_version,
                "arbitration": decision.arbitration,
                "instance_id": instance_id,
                "decided_at": self.now,
                "step": None,
            }
        )
        self.report.decisions += 1
