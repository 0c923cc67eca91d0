"""Decisions, scenario instances, the outbox and consumer offsets."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from omnicrm.store.profiles import chunks
from omnicrm.store.tables import decisions, events, instances, offsets, outbox


def insert_decisions(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(decisions), rows)


def decisions_of(conn: Connection, customer_id: str, limit: int) -> list[dict[str, Any]]:
    query = (
        select(decisions)
        .where(decisions.c.customer_id == customer_id)
        .order_by(decisions.c.decided_at.desc(), decisions.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


_INSTANCE_COLUMNS = tuple(column.key for column in instances.c)
_MUTABLE = ("step", "status", "due_at", "last_reaction", "outcome", "goal_reached", "updated_at", "ended_at")
_SAVE = (
    update(instances)
    .where(instances.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in _MUTABLE})
)


def insert_instances(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(instances), [{c: row.get(c) for c in _INSTANCE_COLUMNS} for row in rows])


def save_instances(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Write the mutable state of many instances in one executemany."""
    if rows:
        conn.execute(_SAVE, [{"b_id": r["id"], **{f"b_{n}": r.get(n) for n in _MUTABLE}} for r in rows])


def instances_of(conn: Connection, customer_ids: Iterable[str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for part in chunks(sorted(set(customer_ids))):
        query = select(instances).where(instances.c.customer_id.in_(part)).order_by(instances.c.id)
        found.extend(dict(r._mapping) for r in conn.execute(query))
    return found


def due_instances(conn: Connection, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Active instances whose timer has expired; on PostgreSQL rows locked by another worker are skipped."""
    query = (
        select(instances)
        .where(instances.c.status == "active", instances.c.due_at <= now)
        .order_by(instances.c.due_at, instances.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [dict(r._mapping) for r in conn.execute(query)]


def insert_outbox(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(outbox), rows)


def cancel_pending(conn: Connection, instance_ids: Iterable[str]) -> int:
    """Pending messages of conversations whose goal was reached are never sent."""
    cancelled = 0
    for part in chunks(sorted(set(instance_ids))):
        result = conn.execute(
            update(outbox)
            .where(outbox.c.instance_id.in_(part), outbox.c.status == "pending")
            .values(status="cancelled")
        )
        cancelled += result.rowcount
    return cancelled


def recent_contacts(
    conn: Connection, customer_ids: Iterable[str], since: datetime, until: datetime | None = None
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    query = select(outbox.c.customer_id, outbox.c.channel, outbox.c.purpose, outbox.c.created_at)
    if until is not None:
        query = query.where(outbox.c.created_at <= until)
    for part in chunks(sorted(set(customer_ids))):
        rows = conn.execute(
            query.where(
                outbox.c.customer_id.in_(part), outbox.c.created_at >= since, outbox.c.status != "cancelled"
            )
        )
        found.extend(dict(r._mapping) for r in rows)
    return found


def outbox_by_key(conn: Connection, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for part in chunks(sorted(set(keys))):
        for row in conn.execute(select(outbox).where(outbox.c.idempotency_key.in_(part))):
            found[row.idempotency_key] = dict(row._mapping)
    return found


def outbox_of(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    query = select(outbox).where(outbox.c.customer_id == customer_id).order_by(outbox.c.id)
    return [dict(r._mapping) for r in conn.execute(query)]


def read_offset(conn: Connection, consumer: str, now: datetime) -> int:
    """The last event pk this consumer handled; the row is locked for the transaction."""
    query = select(offsets.c.last_event_pk).where(offsets.c.consumer == consumer).with_for_update()
    value = conn.execute(query).scalar_one_or_none()
    if value is None:
        conn.execute(insert(offsets).values(consumer=consumer, last_event_pk=0, updated_at=now))
        return 0
    return int(value)


def write_offset(conn: Connection, consumer: str, last_event_pk: int, now: datetime) -> None:
    conn.execute(
        update(offsets)
        .where(offsets.c.consumer == consumer)
        .values(last_event_pk=last_event_pk, updated_at=now)
    )


def events_after(conn: Connection, last_pk: int, limit: int, upto: int | None = None) -> list[dict[str, Any]]:
    query = select(events).where(events.c.id > last_pk).order_by(events.c.id).limit(limit)
    if upto is not None:
        query = query.where(events.c.id <= upto)
    return [dict(r._mapping) for r in conn.execute(query)]


def events_of(
    conn: Connection,
    customer_ids: Iterable[str],
    since: datetime,
    types: Iterable[str] = (),
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    columns = (
        events.c.customer_id,
        events.c.event_id,
        events.c.type,
        events.c.occurred_at,
        events.c.channel,
        events.c.attributes,
    )
    for part in chunks(sorted(set(customer_ids))):
        query = select(*columns).where(events.c.customer_id.in_(part), events.c.occurred_at >= since)
        if wanted := list(types):
            query = query.where(events.c.type.in_(wanted))
        if until is not None:
            query = query.where(events.c.occurred_at <= until)
        found.extend(
            dict(r._mapping) for r in conn.execute(query.order_by(events.c.occurred_at, events.c.id))
        )
    return found
