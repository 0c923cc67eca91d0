"""Read models for compliance and operators: decisions in words, conversations and their outbox."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from omnicrm.domain.explain import explain
from omnicrm.services.customers import live_id
from omnicrm.store import conversations


def decisions(conn: Connection, customer_id: str, *, limit: int = 50) -> dict[str, Any]:
    """The latest decisions about a person, each with its reasons as data and as words."""
    customer_id = live_id(conn, customer_id)
    rows = conversations.decisions_of(conn, customer_id, limit)
    return {"customer_id": customer_id, "items": [{**row, "explanation": explain(row)} for row in rows]}


def conversations_view(conn: Connection, customer_id: str) -> dict[str, Any]:
    """The person's scenario instances and every message or task they queued."""
    customer_id = live_id(conn, customer_id)
    return {
        "customer_id": customer_id,
        "instances": conversations.instances_of(conn, [customer_id]),
        "outbox": conversations.outbox_of(conn, customer_id),
    }
