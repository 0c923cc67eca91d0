"""Read models for compliance and operators: decisions in words, conversations and their outbox."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from omnicrm.domain.explain import explain
from omnicrm.services.profiles.customers import live_id
from omnicrm.store import conversations


def decisions(conn: Connection, customer_id: str, *, limit: int = 50) -> dict[str, Any]:
    """The latest decisions about a person, each with its reasons as data and as words."""
    customer_id = live_id(conn, customer_id)
    rows = conversations.decisions_of(conn, customer_id, limit)
    return {"customer_id": customer_id, "items": [{**row, "explanation": explain(row)} for row in rows]}


def conversations_view(conn: Connection, customer_id: str) -> dict[str, Any]:
    """The person's scenario instances, each with the messages and tasks it queued (and where each
    stands in its lifecycle) and the steps it held, skipped or cancelled, with their reasons."""
    customer_id = live_id(conn, customer_id)
    outbox = conversations.outbox_of(conn, customer_id)
    steps = conversations.step_decisions_of(conn, customer_id)
    instances = []
    for row in conversations.instances_of(conn, [customer_id]):
        mine = row["id"]
        instances.append(
            {
                **row,
                "messages": [m for m in outbox if m["instance_id"] == mine],
                "steps": [{**d, "explanation": explain(d)} for d in steps if d["instance_id"] == mine],
            }
        )
    return {"customer_id": customer_id, "instances": instances, "outbox": outbox}
