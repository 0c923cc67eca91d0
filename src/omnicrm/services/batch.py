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
from omnicrm.domain.router import Advance, Effect, run
from omnicrm.domain.rules import cap_state, permitted_channels, send_hold
from omnicrm.domain.scenarios import Library, Scenario
from omnicrm.services.facts import CONTACT_MEMORY_DAYS, load_facts
from omnicrm.services.identity import new_customer_id as new_instance_id
from omnicrm.services.report import Report
from omnicrm.store import conversations

log = logging.getLogger(__name__)

# Delivery reports say where a message is, not what the client did: they never resume a wait.
STATUS_REPORTS = frozenset({"delivered"})


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
        if self.active:
            since = now - timedelta(days=CONTACT_MEMORY_DAYS)
            for instance_id, channel, purpose, at in conversations.pending_contacts(
                conn, self.active, since, until
            ):
                self.withdrawable[instance_id].append((channel, purpose, at))
        self.decisions: list[dict[str, Any]] = []
        self.new: dict[str, dict[str, Any]] = {}  # instances started in this batch (inserted at flush)
        self.changed: dict[str, dict[str, Any]] = {}  # existing instances whose state moved
        self.messages: list[dict[str, Any]] = []
        self.goal_met: set[str] = set()  # instances whose pending messages must be cancelled
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
            if message["instance_id"] in self.goal_met:
                message["status"] = "cancelled"
        ended = self.goal_met - set(self.new)  # each was saved (finish), so its owner is known
        owners = {self.changed[i]["customer_id"] for i in ended} if ended <= set(self.changed) else None
        return conversations.prepare_batch(
            self.conn.dialect,
            new=list(self.new.values()),
            moved=list(self.changed.values()),
            messages=self.messages,
            decided=self.decisions,
            ended=ended,
            ended_by=owners,
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
                self.finish(customer, row, "goal_reached", goal=True)

    def reaction(self, customer: CustomerFacts, event: EventFacts, sent: dict[str, Any] | None) -> None:
        if sent is None or sent["instance_id"] is None:
            return
        row = next(
            (r for r in self.active.get(customer.id, {}).values() if r["id"] == sent["instance_id"]), None
        )
        scenario = self.library.get(row["scenario_id"], row["scenario_version"]) if row else None
        if row is None or scenario is None or scenario.steps[row["step"]].kind != "wait":
            return  # the conversation moved on: a second, parallel reaction joins it without forking
        reaction = str(event.attributes.get("reaction", ""))
        if reaction in STATUS_REPORTS:
            return  # the message arrived: the client has not reacted yet, the wait goes on
        self.save(row, last_reaction=reaction[:16])
        self.advance(customer, scenario, row, cause=event.event_id, reaction=reaction, event=event)

    def finish(
        self, customer: CustomerFacts, row: dict[str, Any], outcome: str, *, goal: bool = False
    ) -> None:
        """End a conversation; only a reached goal withdraws the messages still waiting to go out."""
        self.save(row, status="completed", outcome=outcome, goal_reached=goal, due_at=None, ended_at=self.now)
        if goal:
            self.goal_met.add(row["id"])
            self._withdraw(customer.id, self.withdrawable.pop(row["id"], []))
        self.active.get(row["customer_id"], {}).pop(row["scenario_id"], None)
        self._remember(customer, row, status="completed", goal=goal)
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
                queue="personal-contact",
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
        customer = self.facts[customer.id]
        policy, purpose, now = self.library.policy, scenario.purpose, self.now
        permitted = {  # consent and blacklist, minus channels the policy closes (a cap of zero)
            c
            for c in permitted_channels(scenario, customer)
            if not cap_state((), policy, now, purpose, c).closed
        }

        def hold(channel: str, kind: str, earlier: tuple[str, ...]) -> datetime | None:
            return send_hold(customer, policy, now, purpose, channel, kind, earlier)

        outcome: Advance = run(
            scenario,
            row["step"],
            now=now,
            context=self.context(customer, event),
            permitted=permitted,
            hold=hold,
            reaction=reaction,
        )
        self.write_effects(customer, scenario, row, list(outcome.effects), cause=cause)
        if outcome.status == "completed":
            self.save(row, step=outcome.step)
            self.finish(customer, row, outcome.outcome or "finished")
            return
        self.save(row, step=outcome.step, due_at=outcome.due_at)

    def write_effects(
        self,
        customer: CustomerFacts,
        scenario: Scenario,
        row: dict[str, Any],
        effects: list[Effect],
        *,
        cause: str,
    ) -> None:
        rows = []
        for effect in effects:
            if effect.kind == "skipped":
                self.report.skipped += 1
                continue
            key = f"{row['id']}:{cause}:{effect.step}"
            rows.append(
                {
                    "idempotency_key": key,
                    "customer_id": customer.id,
                    "instance_id": row["id"],
                    "kind": "message" if effect.kind == "send" else "task",
                    "channel": effect.channel,
                    "template": effect.template,
                    "purpose": scenario.purpose,
                    "status": "pending",
                    "available_at": self.now,
                    "created_at": self.now,
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
        contacts = tuple((r["channel"], r["purpose"], self.now) for r in rows)
        self.withdrawable[row["id"]].extend(contacts)
        self.facts[customer.id] = self.facts[customer.id].evolve(
            contacts=self.facts[customer.id].contacts + contacts
        )

    def _withdraw(self, customer_id: str, withdrawn: list[Contact]) -> None:
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
            }
        )
        self.report.decisions += 1
