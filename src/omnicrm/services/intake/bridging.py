"""The broker bridge wired to omnicrm (bridge/ speaks envelopes; this module speaks the database).

- Out: the timeline's status events (`crm.message.status` written by dispatch, `message.reaction`
  written by feedback) after the relay's offset, read only up to the committed bound (on
  PostgreSQL a lower primary key can commit later: the relay never passes one still in flight).
- In: a bank system's CloudEvents go through the same validation and intake as `POST /v1/events`;
  an event refused (bad envelope, unknown type, a card number, an erased person) is dead-lettered
  with its reason, the others of the batch are stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.engine import Connection

from omnicrm.bridge.base import DONE, Delivery, Invalid, Verdict
from omnicrm.bridge.envelope import CloudEvent, InvalidEnvelope, status_event, to_event_json
from omnicrm.domain.catalogue import Catalogue
from omnicrm.domain.errors import DomainError
from omnicrm.services.intake import ingest
from omnicrm.store import offsets, timeline
from omnicrm.store.tables import events
from omnicrm.store.uow import UnitOfWork

RELAY = "bridge.relay"


class Container(Protocol):
    """What the bridge needs of the application's container (bootstrap.Container)."""

    catalogue: Catalogue

    def uow(self) -> UnitOfWork: ...

    def reader(self) -> AbstractContextManager[Connection]: ...


_TYPES = ("crm.message.status", "message.reaction")


def _cloud(row: dict[str, Any]) -> CloudEvent:
    attributes = row["attributes"] or {}
    status = attributes.get("status") if row["type"] == "crm.message.status" else attributes.get("reaction")
    return status_event(
        event_id=row["event_id"],
        customer_id=row["customer_id"],
        message_id=str(attributes["message_id"]),
        status=str(status),
        occurred_at=row["occurred_at"],
        channel=row["channel"],
        provider=attributes.get("provider"),
    )


def status_events_after(container: Container, offset: int, limit: int) -> list[tuple[int, CloudEvent]]:
    with container.reader() as conn:
        bound = timeline.committed_bound(conn)
        query = select(events).where(events.c.id > offset, events.c.type.in_(_TYPES))
        if bound is not None:
            query = query.where(events.c.id <= bound)
        rows = conn.execute(query.order_by(events.c.id).limit(limit)).mappings().all()
    return [(int(r["id"]), _cloud(dict(r))) for r in rows]


def relay_offset(container: Container) -> int:
    with container.uow() as uow:
        at = offsets.read_offset(uow.conn, RELAY, datetime.now(UTC)) or 0
        uow.commit()
    return at


def save_relay_offset(container: Container, pk: int) -> None:
    with container.uow() as uow:
        offsets.write_offset(uow.conn, RELAY, pk, datetime.now(UTC))
        uow.commit()


def take_deliveries(
    container: Container, deliveries: Sequence[Delivery], *, type_prefix: str = ""
) -> list[Verdict]:
    """Store a batch of bank events; each refused one gets its reason (field names, never values)."""
    verdicts: list[Verdict] = []
    prepared: list[tuple[int, ingest.Prepared]] = []
    for index, delivery in enumerate(deliveries):
        try:
            raw = to_event_json(delivery.event, type_prefix=type_prefix)
        except InvalidEnvelope as exc:
            verdicts.append(Invalid(str(exc)))
            continue
        item = ingest.prepare_one(raw, index, container.catalogue, ingest.EVENT_KINDS)
        if isinstance(item, list):
            verdicts.append(Invalid("; ".join(f"{e.field}: {e.reason}" for e in item)[:500]))
            continue
        verdicts.append(DONE)
        prepared.append((index, item))
    if not prepared:
        return verdicts
    try:
        ingest.store(container.uow, [("bridge", [p for _, p in prepared])], now=datetime.now(UTC))
    except DomainError:  # one item spoils the batch (an erased person...): take them one by one
        for index, item in prepared:
            try:
                ingest.store(container.uow, [("bridge", [item])], now=datetime.now(UTC))
            except DomainError as exc:
                verdicts[index] = Invalid(f"{exc.code}: {exc.detail}"[:500])
    return verdicts
