"""What-if replay: run stored events through one scenario version without sending anything.

The stored triggers and goals of a period are read in time order and handed to the same
orchestration the live worker runs, with a simulated clock (the time of each page of events) and
simulated conversations kept in memory: nothing is written. Expired timers are advanced as the
clock passes them. The report says how many clients would enter, be contacted on each channel, be
suppressed by each rule, and reach the goal.

Simplifications, stated in the report: profiles (consent, products, flags) are read as they are
today; the clock moves an hour at a time and contacts made by the simulation count towards caps only
within that hour; reactions to simulated messages cannot exist, so waits end by timeout or the goal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from omnicrm.domain.scenarios import Library, Scenario
from omnicrm.services.conversations.batch import Batch
from omnicrm.services.conversations.orchestration import handle_due, handle_events
from omnicrm.store import timeline

PAGE = 1000
_TICK = timedelta(hours=1)
NOTE = (
    "profiles as they are today; the clock moves an hour at a time; the simulation's own contacts "
    "count towards caps within that hour only; no reactions to simulated messages (waits end by "
    "timeout or goal)"
)


@dataclass
class ReplayReport:
    scenario: str
    start: datetime
    end: datetime
    events: int = 0
    decisions: int = 0
    entered: int = 0  # conversations started (contact, delay or escalate)
    clients: int = 0  # distinct clients who entered
    delayed: int = 0
    escalated: int = 0
    joined: int = 0  # the trigger came again while the conversation ran
    suppressed: Counter[str] = field(default_factory=Counter)  # first suppressing rule -> count
    contacted: Counter[str] = field(default_factory=Counter)  # channel -> messages
    tasks: int = 0
    skipped: int = 0  # sends not permitted (consent, blacklist) at their moment
    goal_reached: int = 0
    still_running: int = 0
    note: str = NOTE

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "events": self.events,
            "decisions": self.decisions,
            "entered": self.entered,
            "clients": self.clients,
            "delayed": self.delayed,
            "escalated": self.escalated,
            "joined": self.joined,
            "suppressed": dict(self.suppressed.most_common()),
            "contacted": dict(self.contacted.most_common()),
            "tasks": self.tasks,
            "skipped": self.skipped,
            "goal_reached": self.goal_reached,
            "still_running": self.still_running,
            "note": self.note,
        }


def _first_suppression(decision: dict[str, Any]) -> str:
    rules = decision["rules"]
    return next((r["rule"] for r in rules if r["effect"] == "suppress"), "other")


class _Simulation:
    def __init__(self, conn: Connection, library: Library, report: ReplayReport) -> None:
        self.conn, self.library, self.report = conn, library, report
        self.instances: dict[str, list[dict[str, Any]]] = {}  # customer -> simulated rows
        self.clients: set[str] = set()

    def rows_of(self, customer_ids: set[str]) -> list[dict[str, Any]]:
        return [row for cid in customer_ids for row in self.instances.get(cid, [])]

    def absorb(self, batch: Batch) -> None:
        """Count what one batch decided and keep its new conversations (changed ones are shared dicts)."""
        for row in batch.new.values():
            self.instances.setdefault(row["customer_id"], []).append(row)
            self.clients.add(row["customer_id"])
        for decision in batch.decisions:
            self.report.decisions += 1
            action = decision["action"]
            if action == "suppress":
                self.report.suppressed[_first_suppression(decision)] += 1
            elif action == "join":
                self.report.joined += 1
            else:
                self.report.entered += 1
                self.report.delayed += action == "delay"
                self.report.escalated += action == "escalate"
        for message in batch.messages:
            if message["kind"] == "message":
                self.report.contacted[message["channel"]] += 1
            else:
                self.report.tasks += 1
        self.report.skipped += batch.report.skipped

    def fire_timers(self, until: datetime) -> None:
        """Advance the simulated conversations whose timer expires by `until`, an hour of clock at a time."""
        stuck: set[str] = set()
        while due := sorted(
            (
                row
                for rows in self.instances.values()
                for row in rows
                if row["status"] == "active"
                and row["due_at"] is not None
                and row["due_at"] <= until
                and row["id"] not in stuck
            ),
            key=lambda r: r["due_at"],
        ):
            group = [r for r in due if r["due_at"] <= due[0]["due_at"] + _TICK]
            moment = group[-1]["due_at"]
            ids = {r["customer_id"] for r in group}
            batch = Batch(self.conn, self.library, ids, moment, instances=self.rows_of(ids), until=moment)
            handle_due(batch, group)
            self.absorb(batch)
            # a profile merged away meanwhile is left where it is, as the live worker does
            stuck.update(r["id"] for r in group if r["status"] == "active" and r["due_at"] <= moment)

    def events(self, rows: list[dict[str, Any]]) -> None:
        now = rows[-1]["occurred_at"]
        ids = {r["customer_id"] for r in rows}
        batch = Batch(self.conn, self.library, ids, now, instances=self.rows_of(ids), until=now)
        handle_events(batch, rows)
        self.absorb(batch)
        self.report.events += len(rows)


def _by_tick(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    groups: list[list[dict[str, Any]]] = []
    for row in rows:
        if groups and row["occurred_at"] < groups[-1][0]["occurred_at"] + _TICK:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def replay(
    conn: Connection,
    library: Library,
    scenario: Scenario,
    start: datetime,
    end: datetime,
    *,
    progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Run the period's stored triggers and goals through `scenario`; writes nothing."""
    if end <= start:
        raise ValueError("the period is empty: --to must be after --from")
    alone = Library(
        {(scenario.id, scenario.version): scenario},
        library.policy,
        current_versions={scenario.id: scenario.version},
    )
    report = ReplayReport(scenario.key, start, end)
    sim = _Simulation(conn, alone, report)
    types = {scenario.trigger_event, scenario.goal_event}
    after: tuple[datetime, int] | None = None
    while rows := timeline.events_between(conn, types, start, end, after=after, limit=PAGE):
        for group in _by_tick(rows):  # the simulated clock moves at most an hour per step
            sim.fire_timers(group[0]["occurred_at"])
            sim.events(group)
        after = (rows[-1]["occurred_at"], int(rows[-1]["id"]))
        if progress is not None:
            progress(len(rows))
    sim.fire_timers(end)
    every = [row for rows in sim.instances.values() for row in rows]
    report.clients = len(sim.clients)
    report.goal_reached = sum(1 for row in every if row["goal_reached"])
    report.still_running = sum(1 for row in every if row["status"] == "active")
    return report


def count_events(conn: Connection, scenario: Scenario, start: datetime, end: datetime) -> int:
    """How many events the replay will read (for a progress bar)."""
    return timeline.count_between(conn, {scenario.trigger_event, scenario.goal_event}, start, end)
