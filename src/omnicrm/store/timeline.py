"""The timeline table: bulk insert of events, dedup look-up, and paged reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from omnicrm.store.bulk import sqlite_time
from omnicrm.store.profiles import among_bound, bound_values
from omnicrm.store.tables import customers, events

_KNOWN_EVENT_IDS = {
    dialect: select(events.c.event_id, events.c.customer_id).where(clause)
    for dialect, clause in among_bound(events.c.event_id, "event_ids").items()
}


def known_event_ids(conn: Connection, event_ids: Sequence[str]) -> dict[str, str]:
    """event_id -> customer_id for the ids already stored."""
    if not event_ids:
        return {}
    rows = conn.execute(_KNOWN_EVENT_IDS[conn.dialect.name], {"event_ids": bound_values(conn, event_ids)})
    return {event_id: customer_id for event_id, customer_id in rows}


_COLUMNS = (
    "event_id",
    "customer_id",
    "origin_id",
    "kind",
    "type",
    "source",
    "channel",
    "occurred_at",
    "received_at",
    "attributes",
)
_SQLITE_INSERT = f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"  # noqa: S608 - constant column names
_PG_COPY = f"COPY events ({', '.join(_COLUMNS)}) FROM STDIN"


EVENTS_WRITE_LOCK = 4_242_001


def committed_bound(conn: Connection) -> int | None:
    """The highest event pk below which every event is committed (PostgreSQL), or None (SQLite).

    Ids come from a sequence, so on PostgreSQL a transaction can commit id 202 before another
    commits 201; a reader taking "everything after my offset" would skip 201 for ever. Taking the
    writers' lock exclusively for an instant waits for every transaction that already holds an id,
    so `max(id)` read then is safe to read up to. SQLite writers are serialised, ids commit in order.
    """
    if conn.dialect.name != "postgresql":
        return None
    conn.exec_driver_sql(f"SELECT pg_advisory_lock({EVENTS_WRITE_LOCK})")
    try:
        return int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())
    finally:
        conn.exec_driver_sql(f"SELECT pg_advisory_unlock({EVENTS_WRITE_LOCK})")


def newest_pk(conn: Connection) -> int:
    """The pk of the newest event every reader may safely read up to (0: none)."""
    bound = committed_bound(conn)
    if bound is None:
        bound = int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())
    return bound


def _values(row: dict[str, Any], occurred: object, received: object) -> tuple[object, ...]:
    """One event row as a tuple in `_COLUMNS` order."""
    return (
        row["event_id"],
        row["customer_id"],
        row["origin_id"],
        row["kind"],
        row["type"],
        row["source"],
        row["channel"],
        occurred,
        received,
        orjson.dumps(row["attributes"]).decode(),
    )


def insert_events(conn: Connection, rows: list[dict[str, Any]], received_at: datetime) -> None:
    """Bulk insert on the hot path: one executemany (SQLite) or COPY (PostgreSQL), no per-row ORM work.

    Every row of one call was received at the same moment, `received_at`.
    """
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        # SQLite gets times in the text form SQLAlchemy reads back; PostgreSQL takes datetimes.
        received = sqlite_time(received_at)
        conn.exec_driver_sql(
            _SQLITE_INSERT, [_values(r, sqlite_time(r["occurred_at"]), received) for r in rows]
        )
    elif conn.dialect.name == "postgresql":
        # Writers hold this lock shared until commit; see committed_bound() for why.
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({EVENTS_WRITE_LOCK})")
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(_PG_COPY) as copy:
            for r in rows:
                copy.write_row(_values(r, r["occurred_at"], received_at))
    else:
        conn.execute(insert(events), [{**r, "received_at": received_at} for r in rows])


def page(
    conn: Connection,
    customer_id: str,
    *,
    kinds: Iterable[str] = (),
    types: Iterable[str] = (),
    channels: Iterable[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    after: tuple[datetime, int] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Newest first; `after` is the (occurred_at, id) of the last row of the previous page."""
    query = select(events).where(events.c.customer_id == customer_id)
    if kinds := list(kinds):
        query = query.where(events.c.kind.in_(kinds))
    if types := list(types):
        query = query.where(events.c.type.in_(types))
    if channels := list(channels):
        query = query.where(events.c.channel.in_(channels))
    if since is not None:
        query = query.where(events.c.occurred_at >= since)
    if until is not None:
        query = query.where(events.c.occurred_at < until)
    if after is not None:
        at, row_id = after
        query = query.where(
            or_(events.c.occurred_at < at, and_(events.c.occurred_at == at, events.c.id < row_id))
        )
    query = query.order_by(events.c.occurred_at.desc(), events.c.id.desc()).limit(limit)
    return [dict(r._mapping) for r in conn.execute(query)]


_PROMOTE = {
    dialect: update(customers)
    # `status || ''` (the same test) keeps SQLite on the primary key, off the status index
    .where(clause, customers.c.status.concat("") == "prospect")
    .values(status="client", updated_at=bindparam("now"))
    for dialect, clause in among_bound(customers.c.id, "ids").items()
}
_COMPLAINTS = (
    update(customers)
    .where(customers.c.id == bindparam("cid"))
    .values(
        # a resolution without its registration (late or missing) never takes the count below 0
        open_complaints=case(
            (customers.c.open_complaints + bindparam("delta") < 0, 0),
            else_=customers.c.open_complaints + bindparam("delta"),
        ),
        updated_at=bindparam("now"),
    )
)


def promote_to_client(conn: Connection, customer_ids: Iterable[str], now: datetime) -> None:
    """A prospect who opens a product becomes a client (and keeps his history)."""
    ids = set(customer_ids)
    if ids:
        conn.execute(_PROMOTE[conn.dialect.name], {"ids": bound_values(conn, ids), "now": now})


def adjust_complaints(conn: Connection, deltas: dict[str, int], now: datetime) -> None:
    """Move each customer's open-complaint count by its delta, in one executemany."""
    moves = [{"cid": cid, "delta": delta, "now": now} for cid, delta in deltas.items() if delta]
    if moves:
        conn.execute(_COMPLAINTS, moves)


def events_between(
    conn: Connection,
    types: Iterable[str],
    start: datetime,
    end: datetime,
    *,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Events of these types with start <= occurred_at < end, in time order, one keyset page at a time
    (`after` = the (occurred_at, id) of the last row of the previous page)."""
    query = select(events).where(
        events.c.type.in_(sorted(set(types))), events.c.occurred_at >= start, events.c.occurred_at < end
    )
    if after is not None:
        moment, pk = after
        query = query.where(
            or_(events.c.occurred_at > moment, and_(events.c.occurred_at == moment, events.c.id > pk))
        )
    query = query.order_by(events.c.occurred_at, events.c.id).limit(limit)
    return [dict(r._mapping) for r in conn.execute(query)]


def count_between(conn: Connection, types: Iterable[str], start: datetime, end: datetime) -> int:
    query = select(func.count()).where(
        events.c.type.in_(sorted(set(types))), events.c.occurred_at >= start, events.c.occurred_at < end
    )
    return int(conn.execute(query).scalar_one())
