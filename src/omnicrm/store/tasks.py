"""Call-centre tasks: one row per outbox row of kind `task`, keyed by its idempotency key.

Every state change is one conditional UPDATE (`... WHERE status = 'open'`), so two operators racing
for a task, or a withdrawal racing a claim, leave exactly one winner on both databases: the loser's
UPDATE matches no row (PostgreSQL re-reads the row after the winner commits; SQLite has one writer).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from omnicrm.domain.callcentre import CLAIMED, CLOSED, LIVE, OPEN, WITHDRAWN
from omnicrm.store.profiles import chunks
from omnicrm.store.tables import outbox, tasks, users


def insert(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert a task unless one with its id exists; True when this call created it."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(tasks).values(row).on_conflict_do_nothing(index_elements=["id"])
    # RETURNING, not rowcount: psycopg's rowcount of a skipped INSERT ... ON CONFLICT is not 0
    return conn.execute(statement.returning(tasks.c.id)).first() is not None


def get(conn: Connection, task_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(tasks).where(tasks.c.id == task_id)).first()
    return dict(row._mapping) if row else None


def page(
    conn: Connection,
    *,
    queue: str | None,
    status: str | None,
    after: tuple[int, datetime, str] | None,
    limit: int,
    branch: str | None = None,
) -> list[dict[str, Any]]:
    """Tasks by priority, then due time, then id (the keyset `after` continues a page); with
    `branch`, only the central call centre's tasks and that branch's."""
    query: Select[Any] = select(tasks)
    if branch is not None:
        query = query.where(or_(tasks.c.branch.is_(None), tasks.c.branch == branch))
    if queue is not None:
        query = query.where(tasks.c.queue == queue)
    if status is not None:
        query = query.where(tasks.c.status == status)
    if after is not None:
        priority, due_at, task_id = after
        query = query.where(
            or_(
                tasks.c.priority > priority,
                and_(tasks.c.priority == priority, tasks.c.due_at > due_at),
                and_(tasks.c.priority == priority, tasks.c.due_at == due_at, tasks.c.id > task_id),
            )
        )
    query = query.order_by(tasks.c.priority, tasks.c.due_at, tasks.c.id).limit(limit)
    return [dict(r._mapping) for r in conn.execute(query)]


def hold_operator(conn: Connection, username: str) -> None:
    """Lock the operator's user row until the transaction ends (PostgreSQL), so one operator's claims
    queue up and the capacity count each reads is the one it leaves behind. SQLite: one writer."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(users.c.id).where(users.c.username == username).with_for_update()).all()


def claimed_by(conn: Connection, username: str) -> int:
    """How many tasks this operator holds claimed now."""
    query = select(func.count()).where(tasks.c.claimed_by == username, tasks.c.status == CLAIMED)
    return int(conn.execute(query).scalar_one())


def claim(conn: Connection, task_id: str, username: str, now: datetime) -> bool:
    """Claim an open task; False when it is not open any more (someone else won, or it ended)."""
    result = conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id, tasks.c.status == OPEN)
        .values(status=CLAIMED, claimed_by=username, claimed_at=now)
    )
    return bool(result.rowcount)


def close(
    conn: Connection, task_id: str, *, claimer: str, disposition: str, note: str | None, now: datetime
) -> bool:
    """Close a task `claimer` holds (claimed, or withdrawn while it was claimed: the call may have
    happened); False when it is not in that state any more."""
    result = conn.execute(
        update(tasks)
        .where(
            tasks.c.id == task_id,
            tasks.c.claimed_by == claimer,
            tasks.c.status.in_((CLAIMED, WITHDRAWN)),
            tasks.c.closed_at.is_(None),
        )
        .values(status=CLOSED, closed_at=now, disposition=disposition, note=note)
    )
    return bool(result.rowcount)


def withdraw_tasks(conn: Connection, keys: Iterable[str], reason: str, now: datetime) -> int:
    """Withdraw these tasks (ids = outbox idempotency keys) still open or claimed: their conversation
    ended (goal reached, opt-out, merge), so no operator may claim them. The reason is kept in the
    task's note until an operator closes it (the table has no reason column of its own)."""
    wanted = sorted(set(keys))
    withdrawn = 0
    for part in chunks(wanted):
        result = conn.execute(
            update(tasks)
            .where(tasks.c.id.in_(part), tasks.c.status.in_(LIVE))
            .values(status=WITHDRAWN, note=f"withdrawn: {reason}"[:2000])
        )
        withdrawn += result.rowcount
    return withdrawn


def withdraw_of_instances(
    conn: Connection,
    instance_ids: Iterable[str],
    customer_ids: Iterable[str] | None = None,
    *,
    reason: str,
    now: datetime | None,
) -> int:
    """Withdraw the live tasks of conversations that ended for `reason` (a task is the outbox row of
    its conversation: found through it, by its owners' index when they are known)."""
    wanted = sorted(set(instance_ids))
    if not wanted:
        return 0
    keys = select(outbox.c.idempotency_key).where(outbox.c.kind == "task")
    query = update(tasks).where(tasks.c.status.in_(LIVE))
    if customer_ids is not None:  # the customer indexes of both tables, not a scan of the outbox
        owners = sorted(set(customer_ids))
        keys = keys.where(outbox.c.customer_id.in_(owners))
        query = query.where(tasks.c.customer_id.in_(owners))
    withdrawn = 0
    for part in chunks(wanted):
        result = conn.execute(
            query.where(tasks.c.id.in_(keys.where(outbox.c.instance_id.in_(part)))).values(
                status=WITHDRAWN, note=f"withdrawn: {reason}"[:2000]
            )
        )
        withdrawn += result.rowcount
    return withdrawn


def withdraw_marketing_calls(conn: Connection, customer_id: str, *, reason: str) -> int:
    """An opt-out of the call centre: this person's live tasks of marketing (non-service) purpose
    are withdrawn, as their queued marketing messages are."""
    keys = select(outbox.c.idempotency_key).where(
        outbox.c.customer_id == customer_id, outbox.c.kind == "task", outbox.c.purpose != "service"
    )
    result = conn.execute(
        update(tasks)
        .where(tasks.c.customer_id == customer_id, tasks.c.status.in_(LIVE), tasks.c.id.in_(keys))
        .values(status=WITHDRAWN, note=f"withdrawn: {reason}"[:2000])
    )
    return int(result.rowcount)
