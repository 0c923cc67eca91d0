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

from sqlalchemy import Engine, Select, and_, bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from omnicrm.domain.lifecycle import QUEUED
from omnicrm.domain.statuses import moves_forward
from omnicrm.store.tables import (
    customers,
    events,
    identifiers,
    instances,
    outbox,
    sent_journal,
)

_ADDRESS_KIND = {"email": "email", "sms": "phone"}


def claim_query(channels: Iterable[str], now: datetime, limit: int) -> Select[Any]:
    """The queued messages on `channels` whose time has come, oldest first. `ix_outbox_claim`
    (status, channel, available_at) serves it: messages of channels this worker does not serve are
    never read, however many wait (the poll runs inside a write transaction on SQLite)."""
    return (
        select(outbox)
        .where(
            outbox.c.status == QUEUED,
            outbox.c.channel.in_(sorted(set(channels))),
            outbox.c.available_at <= now,
        )
        .order_by(outbox.c.available_at, outbox.c.id)
        .limit(limit)
    )


def claim(conn: Connection, channels: Iterable[str], now: datetime, limit: int = 1) -> list[dict[str, Any]]:
    """The next queued messages (up to `limit`) on `channels` whose time has come, locked for this
    transaction (PostgreSQL: rows another worker holds are skipped)."""
    query = claim_query(channels, now, limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [dict(r._mapping) for r in conn.execute(query)]


_RECORDED = ("status", "status_reason", "status_at", "attempts", "available_at", "provider", "provider_id")
_RECORD = (
    update(outbox)
    .where(outbox.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in _RECORDED})
)


def change(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`record`'s parameters for a claimed row: the changed fields, the others as claimed."""
    unknown = set(changes) - set(_RECORDED)
    if unknown:
        raise ValueError(f"not a recorded field: {sorted(unknown)}")
    return {"b_id": row["id"], **{f"b_{name}": changes.get(name, row[name]) for name in _RECORDED}}


def record(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Write what became of claimed messages (rows made by `change`), in one statement."""
    if rows:
        conn.execute(_RECORD, rows)


def advance(conn: Connection, message: dict[str, Any], status: str, now: datetime, **values: Any) -> bool:
    """Show `status` on a message read as `message` if it moves the message forward (a message never
    moves back: domain/statuses.moves_forward); the update holds only while the message is still at
    the status it was read with. `values`: other columns to set with it. True when it moved."""
    current = str(message["status"])
    if not moves_forward(current, status):
        return False
    conn.execute(
        update(outbox)
        .where(outbox.c.id == message["id"], outbox.c.status == current)
        .values(status=status, status_at=now, **values)
    )
    message["status"] = status  # a later report of the same batch compares with this
    return True


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


def first_names(conn: Connection, customer_ids: Iterable[str]) -> dict[str, str]:
    """Each person's first name (what the templates greet them by)."""
    query = select(customers.c.id, customers.c.first_name).where(
        customers.c.id.in_(sorted(set(customer_ids)))
    )
    return {str(cid): str(name or "") for cid, name in conn.execute(query)}


def addresses(conn: Connection, customer_ids: Iterable[str]) -> dict[tuple[str, str], str]:
    """(customer id, channel) -> the person's newest address on that channel (e-mail, phone)."""
    query = (
        select(identifiers.c.customer_id, identifiers.c.kind, identifiers.c.value)
        .where(
            identifiers.c.customer_id.in_(sorted(set(customer_ids))),
            identifiers.c.kind.in_(("email", "phone")),
        )
        .order_by(identifiers.c.created_at)
    )
    found: dict[tuple[str, str], str] = {}
    channel_of = {kind: channel for channel, kind in _ADDRESS_KIND.items()}
    for cid, kind, value in conn.execute(query):
        found[(str(cid), channel_of[kind])] = str(value)  # the newest wins
    return found


def conversations_of(conn: Connection, instance_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each conversation with `trigger_attributes`: the attributes of the event that started it
    (amounts, dates... that its messages quote)."""
    query = select(instances, events.c.attributes.label("trigger_attributes")).select_from(
        instances.outerjoin(events, and_(events.c.event_id == instances.c.trigger_event_id))
    )
    rows = conn.execute(query.where(instances.c.id.in_(sorted(set(instance_ids)))))
    return {str(r.id): dict(r._mapping) for r in rows}


def sent_before(conn: Connection, keys: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Messages among `keys` the journal says a provider accepted: key -> (provider, provider id)."""
    query = select(sent_journal.c.idempotency_key, sent_journal.c.provider, sent_journal.c.provider_id)
    rows = conn.execute(query.where(sent_journal.c.idempotency_key.in_(sorted(set(keys)))))
    return {str(k): (str(p), str(pid)) for k, p, pid in rows}


_JOURNAL_LINE = pg_insert(sent_journal).on_conflict_do_nothing()  # built once: the rows are parameters


class Journal:
    """Each provider's acceptance, written the moment it happens on a connection of its own, while
    the batch's transaction still holds its messages: a worker killed before that transaction
    commits leaves the messages queued, and the next worker finds them here and records them sent
    instead of sending them again. So a kill costs at most the one message between the provider's
    answer and its journal line.

    The journal's commits do not wait for the disk (`synchronous_commit = off`): a killed worker
    loses nothing the server has, and only a crash of PostgreSQL itself can lose the last fraction
    of a second of lines - which can cost duplicate attempts, never a lost message."""

    def __init__(self, engine: Engine) -> None:
        self._conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._conn.exec_driver_sql("SET synchronous_commit TO off")

    def accepted(self, key: str, provider: str, provider_id: str, now: datetime) -> None:
        row = {
            "idempotency_key": key,
            "provider": provider[:64],
            "provider_id": provider_id[:200],
            "sent_at": now,
        }
        self._conn.execute(_JOURNAL_LINE, row)

    def purge(self, before: datetime) -> int:
        """Forget lines written before `before` (the dispatch expiry ago: a message still queued
        that long is withdrawn as expired, never sent, so its line can no longer matter)."""
        done = self._conn.execute(delete(sent_journal).where(sent_journal.c.sent_at < before))
        return int(done.rowcount or 0)

    def close(self) -> None:
        self._conn.close()
