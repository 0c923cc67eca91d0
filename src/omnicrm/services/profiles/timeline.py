"""The customer's timeline: events and CRM interactions together, newest first, cursor-paged."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from omnicrm.domain.errors import InvalidInput, ItemError
from omnicrm.services.profiles.customers import live_id
from omnicrm.store import timeline

MAX_PAGE = 500


def encode_cursor(occurred_at: datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([occurred_at.isoformat(), row_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        at, row_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(at), int(row_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidInput(
            "bad cursor", [ItemError(None, "cursor", "not a cursor this API issued")]
        ) from None


def read(
    conn: Connection,
    customer_id: str,
    *,
    kinds: list[str],
    types: list[str],
    channels: list[str],
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    """One page of the timeline and the cursor of the next page (None at the end)."""
    customer_id = live_id(conn, customer_id)
    after = decode_cursor(cursor) if cursor else None
    rows = timeline.page(
        conn,
        customer_id,
        kinds=kinds,
        types=types,
        channels=channels,
        since=since,
        until=until,
        after=after,
        limit=min(limit, MAX_PAGE) + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        {
            k: r[k]
            for k in (
                "event_id",
                "kind",
                "type",
                "source",
                "channel",
                "occurred_at",
                "received_at",
                "attributes",
            )
        }
        for r in rows
    ]
    next_cursor = encode_cursor(rows[-1]["occurred_at"], rows[-1]["id"]) if more and rows else None
    return {"customer_id": customer_id, "items": items, "next_cursor": next_cursor}
