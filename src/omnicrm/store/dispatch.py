"""What the dispatch worker reads and writes: claiming a queued message, and what sending it needs.

A worker sends one message per transaction and holds the message's row while it sends: on
PostgreSQL `FOR UPDATE SKIP LOCKED` (other workers take the next message), on SQLite the write lock
of the one writer. Whatever withdraws queued messages (an opt-out, a goal, a complaint) updates
those rows, so it waits for a send in flight to finish, and a message it withdrew is never claimed:
no send starts after a withdrawal has committed. `fence` gives the same to a change that does not
touch the outbox itself (a consent withdrawn through the API).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.engine import Connection

from omnicrm.domain.lifecycle import QUEUED
from omnicrm.store.tables import customers, events, identifiers, instances, outbox, push_subscriptions

_ADDRESS_KIND = {"email": "email", "sms": "phone"}


def claim(conn: Connection, channels: Iterable[str], now: datetime) -> dict[str, Any] | None:
    """The next queued message on one of `channels` whose time has come, locked for this
    transaction (None when there is none free)."""
    query = (
        select(outbox)
        .where(
            outbox.c.status == QUEUED,
            outbox.c.available_at <= now,
            outbox.c.channel.in_(sorted(set(channels))),
        )
        .order_by(outbox.c.available_at, outbox.c.id)
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row = conn.execute(query).first()
    return dict(row._mapping) if row is not None else None


def record(conn: Connection, message_id: int, **values: Any) -> None:
    """Write what became of a claimed message (status, reason, provider, attempts, next try)."""
    conn.execute(update(outbox).where(outbox.c.id == message_id).values(**values))


def fence(conn: Connection, customer_ids: Iterable[str]) -> None:
    """Wait until no message of these people is being sent (PostgreSQL: lock their queued rows
    for this transaction; SQLite: the writer already excludes the dispatch worker)."""
    if conn.dialect.name != "postgresql":
        return
    query = (
        select(outbox.c.id)
        .where(outbox.c.customer_id.in_(sorted(set(customer_ids))), outbox.c.status == QUEUED)
        .with_for_update()
    )
    conn.execute(query).all()


def person(conn: Connection, customer_id: str) -> dict[str, Any] | None:
    """The profile fields a message may use (first name, language), or None if merged away."""
    row = conn.execute(
        select(customers.c.first_name, customers.c.language, customers.c.merged_into).where(
            customers.c.id == customer_id
        )
    ).first()
    return dict(row._mapping) if row is not None else None


def address(conn: Connection, customer_id: str, channel: str) -> str | None:
    """The person's newest address for `channel` (e-mail address, phone number), if any."""
    kind = _ADDRESS_KIND.get(channel)
    if kind is None:
        return None
    query = (
        select(identifiers.c.value)
        .where(identifiers.c.customer_id == customer_id, identifiers.c.kind == kind)
        .order_by(identifiers.c.created_at.desc())
        .limit(1)
    )
    value = conn.execute(query).scalar()
    return str(value) if value is not None else None


def subscriptions(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    query = select(push_subscriptions).where(push_subscriptions.c.customer_id == customer_id)
    return [dict(r._mapping) for r in conn.execute(query.order_by(push_subscriptions.c.id))]


def forget_subscription(conn: Connection, subscription_id: int) -> None:
    conn.execute(delete(push_subscriptions).where(push_subscriptions.c.id == subscription_id))


def trigger_attributes(conn: Connection, instance_id: str | None) -> dict[str, Any]:
    """The attributes of the event that started the message's conversation (amounts, dates...)."""
    if instance_id is None:
        return {}
    query = select(events.c.attributes).select_from(
        instances.join(events, and_(events.c.event_id == instances.c.trigger_event_id))
    )
    value = conn.execute(query.where(instances.c.id == instance_id)).scalar()
    return dict(value) if isinstance(value, dict) else {}


def instance_of(conn: Connection, instance_id: str | None) -> dict[str, Any] | None:
    if instance_id is None:
        return None
    row = conn.execute(select(instances).where(instances.c.id == instance_id)).first()
    return dict(row._mapping) if row is not None else None
