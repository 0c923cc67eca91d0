"""A reaction reported as an event moves its message, as a provider's report does.

The bank's app or internet bank may report what the client did with a message itself - a tap on a
push, a read in the app - as a `message.reaction` through `POST /v1/events` or the broker bridge,
not through our webhooks and tracked links (services/feedback). Either way the message shows its
furthest status (domain/statuses.moves_forward), in the transaction that stores the reaction.
Only a message that was sent can be reacted to, and only by the person it was sent to (or the
profile theirs was merged into): a reaction naming a queued, withdrawn or dead message, or someone
else's, is kept on the timeline and moves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from omnicrm.domain.statuses import STATUSES
from omnicrm.store import conversations, dispatch, merging

REACTION = "message.reaction"


def follow(conn: Connection, rows: Sequence[dict[str, Any]], *, now: datetime) -> int:
    """Move the messages these stored timeline rows react to; returns how many moved."""
    found = [
        r
        for r in rows
        if r["type"] == REACTION
        and r["attributes"].get("reaction") in STATUSES
        and r["attributes"].get("message_id")
    ]
    if not found:
        return 0
    messages = conversations.outbox_by_key(conn, [str(r["attributes"]["message_id"]) for r in found])
    moved = 0
    for row in found:
        message = messages.get(str(row["attributes"]["message_id"]))
        reaction = str(row["attributes"]["reaction"])
        if message is None or not _theirs(conn, message, row):
            continue
        if str(message["status"]) not in STATUSES:
            continue  # never sent: queued, withdrawn, dead
        moved += dispatch.advance(conn, message, reaction, now)
    return moved


def _theirs(conn: Connection, message: dict[str, Any], row: dict[str, Any]) -> bool:
    """Whether the message went to the person reacting (or to a profile merged into theirs since)."""
    owner = message["customer_id"]
    return bool(owner == row["customer_id"] or owner in merging.descendants(conn, row["customer_id"]))
