"""One status report in, its effects once: the inbox of feedback.

Every report - a provider's webhook, a Kannel delivery receipt, a tracked open or click, an
unsubscribe, an inbox read, an operator's disposition - arrives as a `Report` and goes through
`take`, in the caller's transaction:

1. the inbox: (source, provider event id) is inserted once; a replay finds it and changes nothing
   (concurrent replays meet on the primary key, and exactly one inserts);
2. the message it is about (by our idempotency key, or the provider's id) moves forward in its
   lifecycle, never back (domain/statuses.moves_forward);
3. a status of kind reaction or suppression - and delivered - becomes a `message.reaction` on the
   timeline through intake (services/intake/ingest.py), so the conversation waiting on that message
   advances by issue 17's rules, and an unsubscribe or spam complaint withdraws consent there
   (services/intake/opt_out.py) in this same transaction; a hard bounce also withdraws the queued messages
   on that channel and closes the channel for this person (the address is dead).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from omnicrm.domain.catalogue import Catalogue
from omnicrm.domain.statuses import STATUSES
from omnicrm.logs import act
from omnicrm.services.intake import ingest
from omnicrm.store import conversations, dispatch, profiles
from omnicrm.store.tables import customers, feedback_inbox, outbox

Outcome = Literal["stored", "duplicate", "unknown_message"]
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Report:
    source: str  # who reported: a provider name, "tracking", "inbox", "task"
    event_id: str  # the reporter's own id of this report (dedup key within the source)
    status: str  # domain/statuses.py
    occurred_at: datetime
    message_key: str | None = None  # our idempotency key, when the report carries it
    provider_id: str | None = None  # else the provider's id of the message
    reason: str | None = None


def remember(conn: Connection, report: Report, key: str | None, now: datetime) -> bool:
    """Insert the report into the inbox; False if it was there already."""
    row = {
        "source": report.source[:32],
        "event_id": report.event_id[:200],
        "message_key": key,
        "status": report.status,
        "received_at": now,
    }
    if conn.dialect.name == "postgresql":
        stmt: Any = pg_insert(feedback_inbox).values(row).on_conflict_do_nothing()
    elif conn.dialect.name == "sqlite":
        stmt = sqlite_insert(feedback_inbox).values(row).on_conflict_do_nothing()
    else:  # pragma: no cover - the two backends above are the supported ones
        stmt = insert(feedback_inbox).values(row)
    return bool(conn.execute(stmt).rowcount)


def _message(conn: Connection, report: Report) -> dict[str, Any] | None:
    if report.message_key is not None:
        where = outbox.c.idempotency_key == report.message_key
    elif report.provider_id is not None:
        where = outbox.c.provider_id == report.provider_id
    else:
        return None
    row = conn.execute(select(outbox).where(where).limit(1)).first()
    return dict(row._mapping) if row is not None else None


def reaction_event_id(source: str, event_id: str) -> str:
    """The timeline id of a report's reaction (within the event id alphabet and length)."""
    digest = hashlib.sha256(source.encode() + b"\x00" + event_id.encode()).hexdigest()
    return f"fb-{digest[:48]}"


def take(conn: Connection, report: Report, *, catalogue: Catalogue, actor: str, now: datetime) -> Outcome:
    """Record one report and apply its effects (see the module's text), in the caller's transaction."""
    status = STATUSES.get(report.status)
    if status is None:
        raise ValueError(f"unknown status {report.status!r}")
    message = _message(conn, report)
    key = str(message["idempotency_key"]) if message is not None else report.message_key
    if not remember(conn, report, key, now):
        act(log, "feedback.duplicate", source=report.source, status=report.status, idempotency_key=key)
        return "duplicate"
    if message is None:
        act(log, "feedback.unknown_message", source=report.source, status=report.status)
        return "unknown_message"
    act(log, "feedback.stored", source=report.source, status=report.status, idempotency_key=key)
    dispatch.advance(conn, message, report.status, now, status_reason=report.reason or None)
    if report.status == "bounced":
        _close_channel(conn, message, now)
    if status.is_reaction:
        _react(conn, report, message, catalogue=catalogue, actor=actor, now=now)
    return "stored"


def _react(
    conn: Connection,
    report: Report,
    message: dict[str, Any],
    *,
    catalogue: Catalogue,
    actor: str,
    now: datetime,
) -> None:
    raw = {
        "event_id": reaction_event_id(report.source, report.event_id),
        "type": "message.reaction",
        "occurred_at": min(report.occurred_at, now).isoformat(),
        "source": "channel",
        "channel": message["channel"],
        "customer_id": message["customer_id"],
        "attributes": {"message_id": message["idempotency_key"], "reaction": report.status},
    }
    prepared = ingest.prepare_one(raw, 0, catalogue, frozenset({"reaction"}), system=True, pan_scanned=True)
    if isinstance(prepared, list):  # our own event: a refusal is a defect, not bad input
        raise AssertionError(f"feedback built an invalid reaction: {prepared}")
    ingest.ingest(conn, [prepared], actor=actor, now=now)


def _close_channel(conn: Connection, message: dict[str, Any], now: datetime) -> None:
    """A hard bounce: nothing more is queued to that address; the channel is blacklisted for the
    person until their address is corrected (an operator removes it from the blacklist)."""
    channel, customer_id = str(message["channel"]), str(message["customer_id"])
    why = f"bounced: {channel} address unreachable ({message['idempotency_key']})"
    conversations.withdraw_channel(conn, customer_id, [channel], reason=why, now=now)
    closed = conn.execute(select(customers.c.channel_blacklist).where(customers.c.id == customer_id)).scalar()
    blacklist = list(closed or [])
    if channel not in blacklist:
        profiles.update_customer(conn, customer_id, {"channel_blacklist": [*blacklist, channel]}, now)
