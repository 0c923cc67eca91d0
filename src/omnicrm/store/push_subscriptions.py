"""Web push subscriptions, one per (customer, device): what the webpush adapter sends to, and what a
404 or 410 from the push service removes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from omnicrm.store.tables import push_subscriptions as table


def of_customer(conn: Connection, customer_id: str | Iterable[str]) -> list[dict[str, Any]]:
    """The subscriptions of a profile (or of several: a live profile and those merged into it)."""
    wanted = [customer_id] if isinstance(customer_id, str) else sorted(set(customer_id))
    query = select(table).where(table.c.customer_id.in_(wanted)).order_by(table.c.id)
    return [dict(r._mapping) for r in conn.execute(query)]


def put(
    conn: Connection,
    customer_id: str,
    device_id: str,
    *,
    endpoint: str,
    p256dh: str,
    auth: str,
    now: datetime,
) -> bool:
    """Store the device's subscription, replacing the one it had; True when the device is new.
    (On PostgreSQL two first PUTs of one device race on the unique key: the loser's transaction
    fails and its caller runs it again, finding the row.)"""
    values = {"endpoint": endpoint, "p256dh": p256dh, "auth": auth, "created_at": now}
    result = conn.execute(
        update(table).where(table.c.customer_id == customer_id, table.c.device_id == device_id).values(values)
    )
    if result.rowcount:
        return False
    conn.execute(table.insert().values(customer_id=customer_id, device_id=device_id, **values))
    return True


def remove(conn: Connection, subscription_id: int) -> bool:
    """Remove one subscription (the push service said it is gone); True when it was there."""
    return bool(conn.execute(delete(table).where(table.c.id == subscription_id)).rowcount)


def remove_device(conn: Connection, customer_ids: Iterable[str], device_id: str) -> bool:
    """Remove a device's subscription (the client turned notifications off); True when it was there."""
    result = conn.execute(
        delete(table).where(
            table.c.customer_id.in_(sorted(set(customer_ids))), table.c.device_id == device_id
        )
    )
    return bool(result.rowcount)
