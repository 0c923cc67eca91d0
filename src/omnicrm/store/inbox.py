"""The internet-bank / mobile-app inbox: rendered messages the client's apps fetch, keyed by the
outbox idempotency key, so a dispatch retried after a crash stores the message once."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from omnicrm.store.tables import inbox_messages


def deliver(
    conn: Connection,
    key: str,
    customer_id: str,
    title: str | None,
    body: str,
    language: str,
    now: datetime,
) -> bool:
    """Put a message in the client's inbox unless it is there already; True when this call did."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    row = {
        "message_key": key,
        "customer_id": customer_id,
        "title": title,
        "body": body,
        "language": language,
        "created_at": now,
        "read_at": None,
    }
    statement = (
        dialect.insert(inbox_messages).values(row).on_conflict_do_nothing(index_elements=["message_key"])
    )
    # RETURNING, not rowcount: psycopg's rowcount of a skipped INSERT ... ON CONFLICT is not 0
    return conn.execute(statement.returning(inbox_messages.c.message_key)).first() is not None


def page(
    conn: Connection, customer_ids: Iterable[str], *, before: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    """These profiles' messages, newest first (the keyset `before` continues a page)."""
    query = select(inbox_messages).where(inbox_messages.c.customer_id.in_(sorted(set(customer_ids))))
    if before is not None:
        at, key = before
        query = query.where(
            or_(
                inbox_messages.c.created_at < at,
                and_(inbox_messages.c.created_at == at, inbox_messages.c.message_key < key),
            )
        )
    query = query.order_by(inbox_messages.c.created_at.desc(), inbox_messages.c.message_key.desc())
    return [dict(r._mapping) for r in conn.execute(query.limit(limit))]


def unread(conn: Connection, customer_ids: Iterable[str]) -> int:
    query = select(func.count()).where(
        inbox_messages.c.customer_id.in_(sorted(set(customer_ids))), inbox_messages.c.read_at.is_(None)
    )
    return int(conn.execute(query).scalar_one())


def get(conn: Connection, key: str) -> dict[str, Any] | None:
    row = conn.execute(select(inbox_messages).where(inbox_messages.c.message_key == key)).first()
    return dict(row._mapping) if row else None


def mark_read(conn: Connection, key: str, now: datetime) -> bool:
    """Mark a message read; True only for the first read (a conditional UPDATE: two reads racing
    leave one winner)."""
    result = conn.execute(
        update(inbox_messages)
        .where(inbox_messages.c.message_key == key, inbox_messages.c.read_at.is_(None))
        .values(read_at=now)
    )
    return bool(result.rowcount)
