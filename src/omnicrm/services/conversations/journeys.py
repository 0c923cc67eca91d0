"""The journey simulator: what the scenarios will do for one client, on a simulated clock.

A journey - a client profile with its consents, a start time, and a timed list of events, reactions
and operator outcomes - runs through the very code the live service runs: intake
(`ingest.prepare` / `ingest.ingest`) and the decision worker's loop (`decider.drain`: new events,
then expired timers), on a throwaway SQLite database in a temporary directory, with the clock set to
each moment in turn: the next event, or the next timer that expires before it. Nothing is stored in
the bank's database and nothing is sent; the throwaway database is read back as the trace and then
deleted. Because it is the same engine, quiet hours in the client's zone, the caps, consent, the
hard rules at every step and the 24 h / 48 h waits behave exactly as they will live.

A reaction names its message by scenario, step or channel (the latest such message queued by then);
the simulator puts that message's id in the `message.reaction`, as a channel provider would.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, StringConstraints, model_validator
from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from omnicrm.domain.catalogue import Catalogue
from omnicrm.domain.errors import InvalidInput, ItemError
from omnicrm.domain.explain import explain
from omnicrm.domain.scenarios import Library, Scenario, parse_duration
from omnicrm.services.contracts import CustomerIn, IdentifierIn, Strict
from omnicrm.services.conversations import decider
from omnicrm.services.intake import ingest
from omnicrm.services.profiles import customers
from omnicrm.store import db
from omnicrm.store.tables import decisions, instances, metadata, outbox
from omnicrm.store.uow import UnitOfWork

ACTOR = "system:simulator"
MAX_MOMENTS = 5000  # a journey that needs more clock steps than this is refused, not spun for ever
Offset = Annotated[str, StringConstraints(pattern=r"^\+?\d+[mhd]$")]
_KIND_ORDER = {
    "event": 0,
    "reaction": 0,
    "decision": 1,
    "cancel": 2,
    "withdrawn": 2,
    "skip": 3,
    "send": 4,
    "task": 4,
    "hold": 5,
    "wait": 6,
    "end": 7,
}


class MessageRef(Strict):
    """Which queued message a reaction answers: the latest matching one at that moment."""

    scenario: str | None = None
    step: str | None = None
    channel: str | None = None


class JourneyItem(Strict):
    """One thing that happens: an event (any catalogue type, operator outcomes included) or a reaction
    to a message the journey queued. `at`: a time, or an offset from the start such as 26h or 3d."""

    at: AwareDatetime | Offset
    type: Annotated[str, StringConstraints(min_length=3, max_length=64)] | None = None
    channel: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=50)
    reaction: (
        Literal["delivered", "opened", "clicked", "replied", "unsubscribed", "bounced", "complained"] | None
    ) = None
    to: MessageRef | None = None

    @model_validator(mode="after")
    def _event_or_reaction(self) -> JourneyItem:
        if (self.type is None) == (self.reaction is None):
            raise ValueError("give either `type` (an event) or `reaction` (with `to`)")
        return self


class JourneyIn(Strict):
    """A client and what happens to them, from `start`, for `days` of simulated time."""

    start: AwareDatetime
    days: int = Field(default=14, ge=1, le=120)
    client: dict[str, Any] = Field(default_factory=dict)
    events: list[JourneyItem] = Field(default_factory=list, max_length=500)

    def moment(self, item: JourneyItem) -> datetime:
        if isinstance(item.at, datetime):
            return item.at
        return self.start + parse_duration(item.at.lstrip("+"))

    @model_validator(mode="after")
    def _within(self) -> JourneyIn:
        end = self.start + timedelta(days=self.days)
        for index, item in enumerate(self.events):
            if not self.start <= self.moment(item) <= end:
                raise ValueError(
                    f"events[{index}] is outside the simulated period ({self.days} days from start)"
                )
        return self


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the trace."""

    at: datetime
    kind: str  # event reaction decision send task wait hold skip cancel withdrawn end
    scenario: str | None = None
    step: str | None = None
    channel: str | None = None
    detail: str = ""
    rule: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "kind": self.kind,
            "scenario": self.scenario,
            "step": self.step,
            "channel": self.channel,
            "detail": self.detail,
            "rule": self.rule,
        }


@dataclass
class Trace:
    start: datetime
    end: datetime
    steps: list[Step] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        sends: dict[str, int] = {}
        for s in self.steps:
            if s.kind in ("send", "task"):
                sends[s.channel or ""] = sends.get(s.channel or "", 0) + 1
        return {
            "start": self.start,
            "end": self.end,
            "trace": [s.as_dict() for s in self.steps],
            "contacts": sends,
            "stored": False,  # nothing of a simulation reaches the bank's database, nothing is sent
        }

    def lines(self) -> list[str]:
        """The trace as text: simulated time, time since start, what happened, where and why."""
        out = []
        for s in self.steps:
            since = s.at - self.start
            hours = f"+{since.days * 24 + since.seconds // 3600}h{since.seconds % 3600 // 60:02d}"
            where = "/".join(p for p in (s.scenario, s.step) if p)
            out.append(
                f"{s.at:%Y-%m-%d %H:%M} {hours:>8}  {s.kind:<9} {where:<45} {s.channel or '':<10} {s.detail}"
            )
        return out


def with_scenario(library: Library, scenario: Scenario) -> Library:
    """`library` with `scenario` (a file not yet published, say) as the current version of its id."""
    current = dict(library.current_versions or {sid: s.version for sid, s in library.current.items()})
    current[scenario.id] = scenario.version
    return Library({**library.versions, (scenario.id, scenario.version): scenario}, library.policy, current)


def only(library: Library, scenario_id: str) -> Library:
    """Just this scenario (its current version) under the library's policy."""
    scenario = library.current.get(scenario_id)
    if scenario is None:
        raise InvalidInput(
            "unknown scenario", [ItemError(None, "only", f"{scenario_id!r} is not in the scenario library")]
        )
    return Library(
        {(scenario.id, scenario.version): scenario}, library.policy, {scenario.id: scenario.version}
    )


def parse(data: object) -> JourneyIn:
    """A journey from JSON data; InvalidInput (problem+json) lists every problem."""
    try:
        return JourneyIn.model_validate(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        errors = getattr(exc, "errors", None)
        items = (
            [ItemError(None, ".".join(str(p) for p in e["loc"]), e["msg"]) for e in errors()]
            if callable(errors)
            else [ItemError(None, "", str(exc))]
        )
        raise InvalidInput("the journey is not valid", items) from None


def _client(journey: JourneyIn) -> CustomerIn:
    data = {"status": "client", **journey.client}
    data.setdefault("identifiers", [IdentifierIn(kind="cookie_id", value="journey-simulator").model_dump()])
    try:
        return CustomerIn.model_validate(data)
    except ValueError as exc:
        raise InvalidInput(
            "the journey's client is not a valid profile", [ItemError(None, "client", str(exc))]
        ) from None


@contextmanager
def _scratch() -> Iterator[Engine]:
    """A throwaway SQLite database in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="omnicrm-journey-") as directory:
        engine = db.make_engine(f"sqlite:///{Path(directory) / 'journey.db'}")
        try:
            metadata.create_all(engine)
            yield engine
        finally:
            engine.dispose()


def simulate(journey: JourneyIn, library: Library, catalogue: Catalogue) -> Trace:
    """Run `journey` through the engine on a simulated clock; stores and sends nothing."""
    client = _client(journey)
    end = journey.start + timedelta(days=journey.days)
    pending = sorted(enumerate(journey.events), key=lambda p: (journey.moment(p[1]), p[0]))
    with _scratch() as engine:
        run = _Run(engine, library, catalogue, journey.start)
        run.customer_id = run.create(client)
        for _ in range(MAX_MOMENTS):
            timer = run.next_timer()
            event_at = journey.moment(pending[0][1]) if pending else None
            if timer is not None and timer <= end and (event_at is None or timer <= event_at):
                run.tick(timer)
            elif event_at is not None:
                batch = [p[1] for p in pending if journey.moment(p[1]) == event_at]
                pending = pending[len(batch) :]
                run.post(batch, event_at)
                run.tick(event_at)
            else:
                break
        else:
            raise InvalidInput(
                "the journey does not settle",
                [ItemError(None, "events", f"more than {MAX_MOMENTS} clock steps: a routing loop?")],
            )
        return Trace(journey.start, end, run.trace)


class _Run:
    """One simulation: the throwaway database, the clock, and the trace read back from it."""

    def __init__(self, engine: Engine, library: Library, catalogue: Catalogue, start: datetime) -> None:
        self.engine, self.library, self.catalogue, self.start = engine, library, catalogue, start
        self.customer_id = ""
        self.trace: list[Step] = []
        self._seen = {"decisions": 0, "outbox": 0}
        self._withdrawn: set[int] = set()
        self._states: dict[str, tuple[str, str, datetime | None]] = {}
        self._serial = 0

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine)

    def create(self, client: CustomerIn) -> str:
        with self.uow() as work:
            customer_id, _ = customers.upsert(work.conn, client, actor=ACTOR, now=self.start, audited=False)
            work.commit()
        return customer_id

    def next_timer(self) -> datetime | None:
        with self.engine.connect() as conn:
            query = select(instances.c.due_at).where(
                instances.c.status == "active", instances.c.due_at.is_not(None)
            )
            due = [row[0] for row in conn.execute(query)]
        return min(due) if due else None

    def post(self, items: list[JourneyItem], at: datetime) -> None:
        """Take in what happens at `at` through intake, as the bank's systems would post it."""
        with self.engine.connect() as conn:
            queued = [dict(r._mapping) for r in conn.execute(select(outbox).order_by(outbox.c.id))]
        raw = [self._event(item, at, queued) for item in items]
        prepared = ingest.prepare(raw, self.catalogue, ingest.EVENT_KINDS | ingest.INTERACTION_KINDS)
        with self.uow() as work:
            ingest.ingest(work.conn, prepared, actor=ACTOR, now=at)
            work.commit()
        by_key = {m["idempotency_key"]: m for m in queued}
        for body in raw:
            if body["type"] != "message.reaction":
                self.trace.append(Step(at, "event", channel=body.get("channel"), detail=body["type"]))
                continue
            answered = by_key[body["attributes"]["message_id"]]
            step = answered["payload"]["step"]
            detail = f"{body['attributes']['reaction']} (to the message of {_sid(answered)}/{step})"
            self.trace.append(Step(at, "reaction", _sid(answered), step, body["channel"], detail))

    def _event(self, item: JourneyItem, at: datetime, queued: list[dict[str, Any]]) -> dict[str, Any]:
        self._serial += 1
        body: dict[str, Any] = {
            "event_id": f"journey-{self._serial}",
            "occurred_at": at.isoformat(),
            "source": "channel"
            if item.reaction
            else "crm"
            if (item.type or "").startswith("crm.")
            else "mobile_app",
            "customer_id": self.customer_id,
        }
        if item.reaction is None:
            body.update(type=item.type, attributes=item.attributes)
            if item.channel:
                body["channel"] = item.channel
            return body
        ref = item.to or MessageRef()
        matching = [
            m
            for m in queued
            if (ref.scenario is None or m["payload"]["scenario"].split("@")[0] == ref.scenario)
            and (ref.step is None or m["payload"]["step"] == ref.step)
            and (ref.channel is None or m["channel"] == ref.channel)
        ]
        if not matching:
            where = ", ".join(f"{k} {v}" for k, v in ref.model_dump().items() if v) or "any"
            raise InvalidInput(
                "a reaction has no message to answer",
                [
                    ItemError(
                        None, "events", f"at {at:%Y-%m-%d %H:%M}: no message ({where}) was queued by then"
                    )
                ],
            )
        message = matching[-1]
        body.update(
            type="message.reaction",
            channel=message["channel"],
            attributes={"message_id": message["idempotency_key"], "reaction": item.reaction},
        )
        return body

    def tick(self, moment: datetime) -> None:
        """The decision worker's round at `moment`: new events, then the timers due by then."""
        decider.drain(self.uow, self.library, now=moment)
        self._read_back(moment)

    def _read_back(self, moment: datetime) -> None:
        """What the round at `moment` did, in the order a reader follows it."""
        with self.engine.connect() as conn:
            found = [
                *self._decided(conn, moment),
                *self._queued(conn, moment),
                *self._moved(conn, moment),
            ]
        found.sort(key=lambda s: _KIND_ORDER[s.kind])
        self.trace.extend(found)

    def _decided(self, conn: Connection, moment: datetime) -> Iterator[Step]:
        """New decisions: first decisions, and steps held, skipped or cancelled."""
        query = select(decisions).where(decisions.c.id > self._seen["decisions"]).order_by(decisions.c.id)
        for d in conn.execute(query):
            row = dict(d._mapping)
            self._seen["decisions"] = row["id"]
            yield _decision_step(row, moment)

    def _queued(self, conn: Connection, moment: datetime) -> Iterator[Step]:
        """Messages and tasks queued since the last round, and those withdrawn."""
        for m in conn.execute(select(outbox).order_by(outbox.c.id)):
            row = dict(m._mapping)
            where = (_sid(row), row["payload"]["step"], row["channel"])
            if row["id"] > self._seen["outbox"]:
                self._seen["outbox"] = row["id"]
                kind = "send" if row["kind"] == "message" else "task"
                task = f"queue {row['payload'].get('queue')}: {row['payload'].get('note')}"
                yield Step(moment, kind, *where, row["template"] or task)
            if row["status"] == "withdrawn" and row["id"] not in self._withdrawn:
                self._withdrawn.add(row["id"])
                yield Step(moment, "withdrawn", *where, row["status_reason"] or "")

    def _moved(self, conn: Connection, moment: datetime) -> Iterator[Step]:
        """Conversations that came to a wait, or ended, since the last round."""
        for r in conn.execute(select(instances).order_by(instances.c.started_at, instances.c.id)):
            row = dict(r._mapping)
            state = (row["step"], row["status"], row["due_at"])
            if self._states.get(row["id"]) == state:
                continue
            self._states[row["id"]] = state
            scenario = self.library.get(row["scenario_id"], row["scenario_version"])
            where = (row["scenario_id"], row["step"])
            if row["status"] != "active":
                yield Step(moment, "end", *where, detail=f"{row['status']}: {row['outcome']}")
            elif scenario is not None and scenario.steps[row["step"]].kind == "wait" and row["due_at"]:
                yield Step(moment, "wait", *where, detail=f"until {row['due_at']:%Y-%m-%d %H:%M} UTC")


def _sid(message: dict[str, Any]) -> str:
    return str(message["payload"]["scenario"]).split("@")[0]


def _decision_step(row: dict[str, Any], moment: datetime) -> Step:
    """A stored decision as a trace line: a first decision, or a step held, skipped or cancelled."""
    blocking = next((r for r in row["rules"] if r["effect"] != "pass"), None)
    kind = {"hold": "hold", "skip": "skip", "cancel": "cancel"}.get(row["action"], "decision")
    words = explain(row).split("\n")[0].split(": ", 1)[-1].rstrip(".")
    if blocking is not None:
        words += f" - {blocking['detail']}"
    return Step(
        moment,
        kind,
        row["scenario_id"],
        row["step"],
        row["channel"],
        words,
        blocking["rule"] if blocking else None,
    )
