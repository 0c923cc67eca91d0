"""Data subjects' rights (GDPR Art. 15, 17, 20): export everything held on a person, and erase it
on the request of one user and the approval of another (four eyes).

Erasure runs in one transaction. It keeps what the bank's figures need - the profile row (marked
erased), event types and times, decisions, the consent ledger (proof of the legal basis, no personal
value in it), message channels and statuses - and removes every personal value: names, birth date,
contact data, free-text notes, event payloads, message payloads, merge snapshots. Identifiers are
deleted and leave only their keyed digests (`domain/privacy.py`), which the intake checks so that a
stale replay never re-creates the person. Audit entries of these actions carry ids and counts only:
the audit chain is never edited, so it must never have held a value that erasure would have to remove.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from ulid import ULID

from omnicrm.domain.errors import Conflict, Forbidden, NotFound
from omnicrm.domain.privacy import ERASED, OUTCOME, REQUESTED
from omnicrm.services.profiles import identity
from omnicrm.services.profiles.customers import live_id
from omnicrm.store import audit, conversations, erasure, merging, profiles

log = logging.getLogger(__name__)
_CHECKPOINT_TRIES = 50


def export(conn: Connection, customer_id: str, *, actor: str, now: datetime) -> dict[str, Any]:
    """Every row naming the person (and the profiles merged into theirs), by table; audited."""
    live = live_id(conn, customer_id)
    ids = merging.descendants(conn, live)
    tables = erasure.rows_of(conn, ids)
    counts = {name: len(rows) for name, rows in tables.items()}
    audit.append(conn, at=now, actor=actor, action="customer.exported", target=live, details={"rows": counts})
    return {
        "customer_id": live,
        "requested_id": customer_id,
        "profile_ids": sorted(ids),
        "exported_at": now,
        "tables": tables,
    }


def request_erasure(conn: Connection, customer_id: str, *, actor: str, now: datetime) -> dict[str, Any]:
    """Open an erasure request (one per person at a time); another user must approve it."""
    live = live_id(conn, customer_id)
    row = profiles.get_customer(conn, live) or {}
    if row.get("status") == ERASED:
        raise Conflict(f"customer {live} is already erased")
    if erasure.open_request_of(conn, live) is not None:
        raise Conflict(f"customer {live} already has an open erasure request")
    request_id = str(ULID())
    savepoint = conn.begin_nested()
    try:
        erasure.add_request(conn, request_id=request_id, customer_id=live, actor=actor, now=now)
    except IntegrityError:  # another request for this person committed meanwhile
        savepoint.rollback()
        raise Conflict(f"customer {live} already has an open erasure request") from None
    savepoint.commit()
    details = {"request_id": request_id}
    audit.append(conn, at=now, actor=actor, action="customer.erasure_requested", target=live, details=details)
    return {"id": request_id, "customer_id": live, "status": REQUESTED, "requested_by": actor}


def approve_erasure(conn: Connection, request_id: str, *, actor: str, now: datetime) -> dict[str, Any]:
    """Carry out a request asked by someone else: the requester approving their own is Forbidden,
    a request already carried out is a Conflict."""
    request = erasure.get_request(conn, request_id)
    if request is None:
        raise NotFound(f"erasure request {request_id} does not exist")
    if request["status"] != REQUESTED:
        raise Conflict(f"erasure request {request_id} was already carried out")
    if request["requested_by"] == actor:
        raise Forbidden("an erasure is approved by someone other than the person who asked for it")
    customer_id, summary = _erase(conn, request["customer_id"], request_id=request_id, now=now)
    erasure.close_request(conn, request_id, approver=actor, now=now, summary=summary)
    details = {"request_id": request_id, "requested_by": request["requested_by"], "rows": summary}
    audit.append(conn, at=now, actor=actor, action="customer.erased", target=customer_id, details=details)
    return {"id": request_id, "customer_id": customer_id, "status": "executed", "rows": summary}


def _erase(
    conn: Connection, customer_id: str, *, request_id: str, now: datetime
) -> tuple[str, dict[str, int]]:
    """The erasure's writes, in the merges' lock order (conversation counters, then profiles), so no
    merge, unmerge or decision batch moves the person's rows meanwhile; moving every counter also
    makes a decision batch decided on an older snapshot be decided again."""
    identity.queue_merge(conn)
    live = identity.hold_live(conn, [customer_id], exclusive=True).get(customer_id)
    if live is None:
        raise NotFound(f"customer {customer_id} does not exist")
    ids = sorted(merging.descendants(conn, live))
    if conn.dialect.name == "sqlite":  # freed cells and pages are zeroed, not left in the file
        conn.exec_driver_sql("PRAGMA secure_delete=ON")
    talks = [r["id"] for cid in ids for r in conversations.active_instances_of(conn, cid)]
    conversations.end_instances(conn, talks, outcome=OUTCOME, now=now)
    summary = {"conversations_ended": len(talks)}
    summary["messages_withdrawn"] = erasure.withdraw_queued(conn, ids, reason=OUTCOME, now=now)
    summary["identifiers"] = erasure.bury_identifiers(conn, ids, request_id=request_id, now=now)
    summary.update(erasure.scrub(conn, ids, now=now))
    return live, summary


def flush_sqlite_log(engine: Engine) -> bool:
    """On SQLite, copy the write-ahead log into the database file and truncate it, so the page
    images written before the erasure (which still hold the erased values) leave the disk. Readers
    holding an older snapshot make SQLite wait; tried for up to ~5 s. True when the log is empty."""
    if engine.dialect.name != "sqlite":
        return True
    raw = engine.raw_connection()
    try:
        for _ in range(_CHECKPOINT_TRIES):
            cursor = raw.cursor()
            busy = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            cursor.close()
            if not busy:
                return True
            time.sleep(0.1)
    finally:
        raw.close()
    log.warning("erasure: the write-ahead log could not be truncated yet; the next checkpoint will")
    return False
