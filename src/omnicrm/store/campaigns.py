"""The campaigns table: rows, compare-and-set status moves, launch claims, and pages of live customers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from omnicrm.store.tables import campaigns, customers


def insert_campaign(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(insert(campaigns).values(**row))


def get(conn: Connection, campaign_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(campaigns).where(campaigns.c.id == campaign_id)).one_or_none()
    return dict(row._mapping) if row is not None else None


def page(conn: Connection, *, status: str | None, before: str | None, limit: int) -> list[dict[str, Any]]:
    """Newest first (ULIDs sort by creation time); `before` is the last id of the previous page."""
    query = select(campaigns).order_by(campaigns.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(campaigns.c.status == status)
    if before is not None:
        query = query.where(campaigns.c.id < before)
    return [dict(r._mapping) for r in conn.execute(query)]


def move(conn: Connection, campaign_id: str, *, expected: Iterable[str], values: dict[str, Any]) -> bool:
    """Set `values` only if the status is still one of `expected` (False: someone moved it meanwhile)."""
    result = conn.execute(
        update(campaigns)
        .where(campaigns.c.id == campaign_id, campaigns.c.status.in_(list(expected)))
        .values(**values)
    )
    return result.rowcount == 1


def claim_launch(conn: Connection, campaign_id: str, *, now: datetime, stale_before: datetime) -> bool:
    """Approved (or failed) and due -> running; or take over a running launch nobody has touched
    since `stale_before` (its process died). One UPDATE, so two launchers cannot both win."""
    due = or_(campaigns.c.starts_at.is_(None), campaigns.c.starts_at <= now)
    claimable = or_(
        and_(campaigns.c.status.in_(("approved", "failed")), due),
        and_(campaigns.c.status == "running", campaigns.c.updated_at < stale_before),
    )
    result = conn.execute(
        update(campaigns)
        .where(campaigns.c.id == campaign_id, claimable)
        .values(
            status="running",
            error=None,
            updated_at=now,
            launched_at=func.coalesce(campaigns.c.launched_at, now),
        )
    )
    return result.rowcount == 1


def due_for_launch(conn: Connection, *, now: datetime, stale_before: datetime) -> list[str]:
    """Approved campaigns whose start time has come, and running ones left behind by a dead process."""
    query = (
        select(campaigns.c.id)
        .where(
            or_(
                and_(campaigns.c.status == "approved", campaigns.c.starts_at <= now),
                and_(campaigns.c.status == "running", campaigns.c.updated_at < stale_before),
            )
        )
        .order_by(campaigns.c.id)
    )
    return list(conn.execute(query).scalars())


def live_customer_ids(conn: Connection, *, after: str | None, limit: int) -> list[str]:
    """One page of live (not merged) customer ids in id order, after `after`."""
    query = (
        select(customers.c.id).where(customers.c.merged_into.is_(None)).order_by(customers.c.id).limit(limit)
    )
    if after is not None:
        query = query.where(customers.c.id > after)
    return list(conn.execute(query).scalars())
