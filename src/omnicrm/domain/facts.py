"""What the decision engine knows about a person: plain data gathered by the services in bulk."""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

Contact = tuple[str, str, dt.datetime]  # (channel, purpose, made at) of a message or task


@dataclass(frozen=True, slots=True)
class EventFacts:
    event_id: str
    type: str
    occurred_at: dt.datetime
    channel: str | None
    attributes: Mapping[str, Any]

    def as_cel(self) -> dict[str, Any]:
        return {"type": self.type, "channel": self.channel or "", "attributes": dict(self.attributes)}


@dataclass(frozen=True, slots=True)
class InstanceFacts:
    """A scenario instance of this person: running, or ended (with when and whether the goal was met)."""

    scenario_id: str
    version: int
    purpose: str
    status: str  # active | completed | cancelled
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    goal_reached: bool = False


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    id: str
    status: str
    value_tier: str | None
    language: str | None
    timezone: str | None
    segments: frozenset[str]
    do_not_contact: bool
    vulnerable: bool
    fraud_case_open: bool
    open_complaints: int
    channel_blacklist: frozenset[str]
    consents: Mapping[tuple[str, str], bool]  # (channel, service|marketing) -> granted
    products: tuple[tuple[str, str], ...]  # (class, state)
    preferred_channel: str | None = None
    contact_window: tuple[dt.time, dt.time] | None = None
    declines: Mapping[str, dt.datetime] = field(default_factory=dict)  # product class -> last decline
    acquired: Mapping[str, dt.datetime] = field(default_factory=dict)  # product class -> last taken
    recent_events: tuple[EventFacts, ...] = ()  # newest last, within the interest window
    contacts: tuple[Contact, ...] = ()  # not cancelled, last 7 days
    responses: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # channel -> (sent, reacted)
    instances: tuple[InstanceFacts, ...] = ()

    def evolve(
        self,
        *,
        recent_events: tuple[EventFacts, ...] | None = None,
        contacts: tuple[Contact, ...] | None = None,
        instances: tuple[InstanceFacts, ...] | None = None,
        declines: Mapping[str, dt.datetime] | None = None,
        acquired: Mapping[str, dt.datetime] | None = None,
    ) -> CustomerFacts:
        """A copy with what changes while a batch is handled replaced (dataclasses.replace, 2x faster)."""
        values = list(_ALL_FIELDS(self))
        if recent_events is not None:
            values[_RECENT] = recent_events
        if contacts is not None:
            values[_CONTACTS] = contacts
        if instances is not None:
            values[_INSTANCES] = instances
        if declines is not None:
            values[_DECLINES] = declines
        if acquired is not None:
            values[_ACQUIRED] = acquired
        return CustomerFacts(*values)

    def as_cel(self) -> dict[str, Any]:
        """The `customer` and `products` variables of every CEL condition."""
        return {
            "customer": {
                "id": self.id,
                "status": self.status,
                "value_tier": self.value_tier or "",
                "language": self.language or "",
                "segments": sorted(self.segments),
                "vulnerable": self.vulnerable,
                "open_complaints": self.open_complaints,
            },
            "products": [{"class": c, "state": s} for c, s in self.products],
        }


_NAMES = tuple(f.name for f in fields(CustomerFacts))
_ALL_FIELDS = operator.attrgetter(*_NAMES)
_RECENT, _CONTACTS, _INSTANCES, _DECLINES, _ACQUIRED = (
    _NAMES.index(n) for n in ("recent_events", "contacts", "instances", "declines", "acquired")
)

SAMPLE_CUSTOMER = CustomerFacts(
    id="sample",
    status="client",
    value_tier="mass",
    language="uk",
    timezone="Europe/Kyiv",
    segments=frozenset({"sample"}),
    do_not_contact=False,
    vulnerable=False,
    fraud_case_open=False,
    open_complaints=0,
    channel_blacklist=frozenset(),
    consents={},
    products=(("card", "active"),),
)
