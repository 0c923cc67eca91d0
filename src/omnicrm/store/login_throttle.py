"""The login throttle's records: one row per user name or client address that failed lately."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from omnicrm.domain.login_throttle import Record
from omnicrm.store.tables import login_throttle as table

Key = tuple[str, str]  # (kind, value)


def prune(conn: Connection, now: datetime) -> None:
    """Delete the forgotten records (an indexed range on `forget_at`, usually empty)."""
    conn.execute(delete(table).where(table.c.forget_at <= now))


def hold(conn: Connection, keys: Sequence[Key], now: datetime) -> dict[Key, Record]:
    """The records of `keys`, created empty when missing and locked for this transaction (in key
    order, so that two attempts never wait for each other crosswise)."""
    keys = sorted(keys)
    rows = [{"kind": k, "value": v, "failures": 0, "locked_until": None, "forget_at": now} for k, v in keys]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).values(rows).on_conflict_do_nothing())
    query = (
        select(table.c.kind, table.c.value, table.c.failures, table.c.locked_until)
        .where(or_(*(and_(table.c.kind == k, table.c.value == v) for k, v in keys)))
        .order_by(table.c.kind, table.c.value)
        .with_for_update()
    )
    return {(r.kind, r.value): Record(r.failures, r.locked_until) for r in conn.execute(query)}


def save(conn: Connection, key: Key, record: Record, forget_at: datetime) -> None:
    conn.execute(
        update(table)
        .where(table.c.kind == key[0], table.c.value == key[1])
        .values(failures=record.failures, locked_until=record.locked_until, forget_at=forget_at)
    )


def remove(conn: Connection, key: Key) -> None:
    conn.execute(delete(table).where(table.c.kind == key[0], table.c.value == key[1]))
