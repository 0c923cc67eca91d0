"""The append-only, hash-chained audit log."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from omnicrm.store.tables import audit_head, audit_log

GENESIS = "0" * 64


def _digest(prev: str, at: datetime, actor: str, action: str, target: str | None, details: Any) -> str:
    body = orjson.dumps(
        [prev, at.isoformat(), actor, action, target, details],
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )
    return hashlib.sha256(body).hexdigest()


def append(
    conn: Connection, *, at: datetime, actor: str, action: str, target: str | None, details: dict[str, Any]
) -> None:
    """Append one entry; the head row is locked so concurrent appends form one chain."""
    at = at.astimezone(UTC)
    prev = conn.execute(
        select(audit_head.c.last_hash).where(audit_head.c.id == 1).with_for_update()
    ).scalar_one()
    digest = _digest(prev, at, actor, action, target, details)
    conn.execute(
        audit_log.insert().values(
            at=at, actor=actor, action=action, target=target, details=details, prev_hash=prev, hash=digest
        )
    )
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(last_hash=digest))


def verify(conn: Connection) -> tuple[bool, int]:
    """Walk the chain; (intact, number of entries checked)."""
    prev, count = GENESIS, 0
    for row in conn.execute(select(audit_log).order_by(audit_log.c.id)):
        if (
            row.prev_hash != prev
            or _digest(prev, row.at, row.actor, row.action, row.target, row.details) != row.hash
        ):
            return False, count
        prev, count = row.hash, count + 1
    return True, count


def entries(
    conn: Connection, *, action: str | None, target: str | None, before_id: int | None, limit: int
) -> list[dict[str, Any]]:
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if action:
        query = query.where(audit_log.c.action == action)
    if target:
        query = query.where(audit_log.c.target == target)
    if before_id:
        query = query.where(audit_log.c.id < before_id)
    return [dict(r._mapping) for r in conn.execute(query)]
