"""Consumer offsets of the events queue, and the conversation counters a worker checks before
writing what it decided on a snapshot (both rows of the `consumer_offsets` table)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection

from omnicrm.domain.partitions import SLOTS, slot_of
from omnicrm.store.tables import offsets

# Read and written by every decision batch: built once, values bound at execution.
_POSITION = select(offsets.c.last_event_pk).where(offsets.c.consumer == bindparam("name")).with_for_update()
_BY_PREFIX = select(offsets.c.consumer, offsets.c.last_event_pk).where(
    offsets.c.consumer.startswith(bindparam("prefix"))
)
_MOVE = (
    update(offsets)
    .where(offsets.c.consumer == bindparam("name"))
    .values(last_event_pk=bindparam("position"), updated_at=bindparam("at"))
)
_COUNTERS = select(offsets.c.consumer, offsets.c.last_event_pk).where(
    offsets.c.consumer.in_(bindparam("names", expanding=True))
)
# Locked in name order: two writers that lock several counters (a decision batch its slots, a merge
# every slot) never hold one each that the other waits for.
_COUNTERS_LOCKED = _COUNTERS.order_by(offsets.c.consumer).with_for_update()


def read_offset(conn: Connection, consumer: str, now: datetime, *, create: bool = True) -> int | None:
    """The last event pk this consumer handled; the row is locked for the transaction. A consumer
    without a row starts at 0 (`create`), or gets None."""
    value = conn.execute(_POSITION, {"name": consumer}).scalar_one_or_none()
    if value is None:
        if not create:
            return None
        conn.execute(insert(offsets).values(consumer=consumer, last_event_pk=0, updated_at=now))
        return 0
    return int(value)


def offsets_of(conn: Connection, prefix: str) -> dict[str, int]:
    """Every consumer row whose name starts with `prefix`, with its position."""
    return {name: int(value) for name, value in conn.execute(_BY_PREFIX, {"prefix": prefix})}


def set_offsets(conn: Connection, positions: dict[str, int], now: datetime) -> None:
    """Create or move these consumers' rows."""
    existing = set(
        conn.execute(select(offsets.c.consumer).where(offsets.c.consumer.in_(positions))).scalars()
    )
    for name, value in positions.items():
        if name in existing:
            write_offset(conn, name, value, now)
        else:
            conn.execute(insert(offsets).values(consumer=name, last_event_pk=value, updated_at=now))


def drop_offsets(conn: Connection, names: Iterable[str]) -> None:
    conn.execute(delete(offsets).where(offsets.c.consumer.in_(sorted(names))))


def write_offset(conn: Connection, consumer: str, last_event_pk: int, now: datetime) -> None:
    conn.execute(_MOVE, {"name": consumer, "position": last_event_pk, "at": now})


# Counters (rows of the offsets table, one per customer slot) that every writer of scenario
# instances moves in its transaction for the slots of the customers it wrote: a worker that decided
# on a snapshot compares its slots' counters before writing what it decided.
VERSION = "conversations@"


def versions(conn: Connection, slots: Iterable[int], *, lock: bool = False) -> tuple[int, ...]:
    """The counters of these slots (0: never written); `lock`: locked until the transaction ends."""
    names = [f"{VERSION}{s}" for s in slots]
    found = dict(conn.execute(_COUNTERS_LOCKED if lock else _COUNTERS, {"names": names}).all())
    return tuple(int(found.get(n, 0)) for n in names)


def touch_conversations(
    conn: Connection, customer_ids: Iterable[str] | None, now: datetime | None = None
) -> None:
    """Move the counters of these customers' slots (None: of every slot). They are locked in name
    order first (see `versions`), not in the order the update would find them."""
    slots = range(SLOTS) if customer_ids is None else sorted({slot_of(c) for c in customer_ids})
    names = [f"{VERSION}{s}" for s in slots]
    if not names:
        return
    at = now or datetime.now(UTC)
    found = select(offsets.c.consumer).where(offsets.c.consumer.in_(names))
    existing = set(conn.execute(found.order_by(offsets.c.consumer).with_for_update()).scalars())
    if existing:
        conn.execute(
            update(offsets)
            .where(offsets.c.consumer.in_(sorted(existing)))
            .values(last_event_pk=offsets.c.last_event_pk + 1, updated_at=at)
        )
    missing = [n for n in names if n not in existing]
    if missing:
        conn.execute(
            insert(offsets), [{"consumer": n, "last_event_pk": 1, "updated_at": at} for n in missing]
        )
