"""Moving a profile's rows on merge, and giving them back on unmerge."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.engine import Connection

from omnicrm.domain.partitions import SLOTS
from omnicrm.store.offsets import VERSION
from omnicrm.store.tables import (
    consents,
    customers,
    events,
    identifiers,
    merges,
    offsets,
    products,
    relationships,
    segments,
)

# Tables whose rows carry customer_id (owner now) and origin_id (profile first recorded on).
OWNED = (identifiers, consents, products, relationships, events)


def move_rows(conn: Connection, *, from_id: str, to_id: str) -> dict[str, int]:
    """Re-own every child row of `from_id` to `to_id`; segments are united."""
    moved: dict[str, int] = {}
    for table in OWNED:
        result = conn.execute(update(table).where(table.c.customer_id == from_id).values(customer_id=to_id))
        moved[table.name] = result.rowcount
    have = set(conn.execute(select(segments.c.segment).where(segments.c.customer_id == to_id)).scalars())
    theirs = list(conn.execute(select(segments.c.segment).where(segments.c.customer_id == from_id)).scalars())
    conn.execute(delete(segments).where(segments.c.customer_id == from_id))
    new = [{"customer_id": to_id, "segment": s} for s in theirs if s not in have]
    if new:
        conn.execute(insert(segments), new)
    return moved


def descendants(conn: Connection, customer_id: str) -> set[str]:
    """The profile and every profile merged into it, directly or through a chain."""
    found = {customer_id}
    frontier = {customer_id}
    while frontier:
        rows = conn.execute(select(customers.c.id).where(customers.c.merged_into.in_(frontier))).scalars()
        frontier = set(rows) - found
        found |= frontier
    return found


def give_back(conn: Connection, *, origin_ids: set[str], to_id: str) -> dict[str, int]:
    """Return to `to_id` every child row first recorded on one of `origin_ids` (and moved since: a row
    still on its first profile stays; the test is what lets the events' partial index serve this)."""
    moved: dict[str, int] = {}
    for table in OWNED:
        result = conn.execute(
            update(table)
            .where(table.c.origin_id.in_(origin_ids), table.c.origin_id != table.c.customer_id)
            .values(customer_id=to_id)
        )
        moved[table.name] = result.rowcount
    return moved


def record_merge(
    conn: Connection,
    *,
    survivor_id: str,
    merged_id: str,
    reason: str,
    snapshot: dict[str, Any],
    actor: str,
    now: datetime,
) -> int:
    result = conn.execute(
        insert(merges).values(
            survivor_id=survivor_id,
            merged_id=merged_id,
            reason=reason,
            snapshot=snapshot,
            created_at=now,
            created_by=actor,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def open_merge_of(conn: Connection, merged_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(merges)
        .where(merges.c.merged_id == merged_id, merges.c.undone_at.is_(None))
        .order_by(merges.c.id.desc())
    ).first()
    return dict(row._mapping) if row else None


def merges_into(conn: Connection, survivor_id: str) -> list[dict[str, Any]]:
    query = select(merges).where(merges.c.survivor_id == survivor_id).order_by(merges.c.id)
    return [dict(r._mapping) for r in conn.execute(query)]


def mark_undone(conn: Connection, merge_id: int, *, actor: str, now: datetime) -> None:
    conn.execute(update(merges).where(merges.c.id == merge_id).values(undone_at=now, undone_by=actor))


_COUNTERS = [f"{VERSION}{slot}" for slot in range(SLOTS)]


def lock_conversation_counters(conn: Connection) -> None:
    """Lock every conversation counter row there is (store/offsets.py), in name order, until the
    transaction ends: the queue merges and unmerges wait in, one at a time. An UPDATE of the same
    rows would lock them in the order it finds them, which changes as rows are rewritten: two
    merges could each hold a counter the other waits for."""
    conn.execute(
        select(offsets.c.consumer)
        .where(offsets.c.consumer.in_(_COUNTERS))
        .order_by(offsets.c.consumer)
        .with_for_update()
    ).all()


# The profiles a batch of events refers to, locked in one statement built once, the ids bound as one
# array (PostgreSQL only: SQLite has no row locks, and its writer is the only one). Only the
# profiles merged away come back, and how many were locked: a batch's hundreds of live profiles
# cost the database their locks, not the client their rows.
_HELD = (
    "WITH held AS (SELECT id, merged_into FROM customers WHERE id = ANY(CAST(:ids AS varchar[])) "
    "ORDER BY id FOR {}) "
    "SELECT id, merged_into FROM held WHERE merged_into IS NOT NULL "
    "UNION ALL SELECT NULL, CAST(count(*) AS varchar) FROM held"
)
_HOLD = {False: text(_HELD.format("KEY SHARE")), True: text(_HELD.format("UPDATE"))}


def hold_profiles(
    conn: Connection, customer_ids: Iterable[str], *, exclusive: bool
) -> tuple[dict[str, str], int]:
    """Lock these profiles until the transaction ends, in id order, as `profiles.lock_customers`
    does (FOR UPDATE if `exclusive`, else FOR KEY SHARE), for the intake's batches of hundreds:
    returns whom each of those merged away is merged into (read after the lock; the others are
    live), and how many of the ids are profiles at all."""
    wanted = sorted(set(customer_ids))
    if not wanted:
        return {}, 0
    merged: dict[str, str] = {}
    found = 0
    for cid, merged_into in conn.execute(_HOLD[exclusive], {"ids": wanted}):
        if cid is None:
            found = int(merged_into)
        else:
            merged[cid] = merged_into
    return merged, found
