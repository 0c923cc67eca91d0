"""Operator tasks: opened from dispatched outbox rows, listed by queue, claimed and closed.

A closure is the client's reaction to the task: a `message.reaction` bound to it (`message_id` =
the task id, the outbox key), stored through the intake in the closure's own transaction. So the
decision worker advances the conversation exactly as for a reaction to a message (issue 17): only
the wait that follows this task moves; a late closure stays on the timeline and moves nothing.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from omnicrm.domain.callcentre import CLAIMED, CLOSED, DISPOSITIONS, OPEN, WITHDRAWN, QueueBook
from omnicrm.domain.catalogue import Catalogue
from omnicrm.domain.errors import CardNumberRefused, Conflict, Forbidden, InvalidInput, ItemError, NotFound
from omnicrm.domain.pan import contains_pan
from omnicrm.services.access.auth import Principal
from omnicrm.services.intake import ingest
from omnicrm.store import audit, conversations
from omnicrm.store import tasks as store

log = logging.getLogger(__name__)
REACTION = "message.reaction"
_VIEW = (
    "id",
    "customer_id",
    "kind",
    "queue",
    "skill",
    "branch",
    "priority",
    "status",
    "due_at",
    "sla_at",
    "created_at",
    "claimed_by",
    "claimed_at",
    "closed_at",
    "disposition",
    "note",
)


def open_task(conn: Connection, outbox_row: dict[str, Any], *, queues: QueueBook, now: datetime) -> bool:
    """Open the task an outbox row of kind `task` stands for (the dispatch worker calls this when it
    hands the row to the `callcentre` channel). Idempotent: the task's id is the row's key, so a
    second call (a retried dispatch) changes nothing. True when this call opened it."""
    if outbox_row["kind"] != "task":
        raise ValueError(f"outbox row {outbox_row['idempotency_key']} is a {outbox_row['kind']}, not a task")
    payload = outbox_row.get("payload") or {}
    queue = str(payload.get("queue") or queues.fallback)
    plan = queues.plan(queue, outbox_row["purpose"], now)
    note = payload.get("note")
    ended = _ended_by(conn, outbox_row)
    if ended is not None:  # its conversation was called off while the row was being dispatched
        note = f"withdrawn: conversation {ended}"
    created = store.insert(
        conn,
        {
            "id": outbox_row["idempotency_key"],
            "customer_id": outbox_row["customer_id"],
            "kind": str(payload.get("kind") or "call"),
            "queue": queue[:64],
            "skill": plan.skill,
            "branch": plan.branch,
            "priority": plan.priority,
            "status": OPEN if ended is None else WITHDRAWN,
            "due_at": plan.due_at,
            "sla_at": plan.sla_at,
            "created_at": now,
            "claimed_by": None,
            "claimed_at": None,
            "closed_at": None,
            "disposition": None,
            "note": str(note)[:2000] if note else None,
        },
    )
    if created:
        log.info(
            "task opened: %s on queue %s (priority %d)", outbox_row["idempotency_key"], queue, plan.priority
        )
    return created


def _ended_by(conn: Connection, outbox_row: dict[str, Any]) -> str | None:
    """How the task's conversation was called off (cancelled, goal reached, merged away), if it
    was: a goal reached between the dispatch's claim of the row and this call found no task to
    withdraw. A conversation that simply ran on past its call step (the shipped ones end right after
    it) leaves the task open."""
    instance_id = outbox_row.get("instance_id")
    if instance_id is None:
        return None
    found = [
        r for r in conversations.instances_of(conn, [outbox_row["customer_id"]]) if r["id"] == instance_id
    ]
    if not found or (found[0]["status"] != "cancelled" and not found[0]["goal_reached"]):
        return None
    return str(found[0]["outcome"] or found[0]["status"])


def view(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in _VIEW}


def get(conn: Connection, task_id: str, branch: str | None = None) -> dict[str, Any]:
    row = store.get(conn, task_id)
    if row is None or not _in_branch(row, branch):
        raise NotFound(f"task {task_id} does not exist")
    return view(row)


def _in_branch(row: dict[str, Any], branch: str | None) -> bool:
    """A branch's operators work the central queues and their own branch's desk, not another's."""
    return branch is None or row["branch"] is None or row["branch"] == branch


def encode_cursor(row: dict[str, Any]) -> str:
    raw = orjson.dumps([row["priority"], row["due_at"].isoformat(), row["id"]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, datetime, str]:
    try:
        priority, due_at, task_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return int(priority), datetime.fromisoformat(due_at), str(task_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("bad cursor", [ItemError(None, "cursor", "not a cursor this API gave")]) from exc


def list_tasks(
    conn: Connection,
    *,
    queue: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
    branch: str | None = None,
) -> dict[str, Any]:
    """A page of tasks, most urgent first (priority, then due time); `next_cursor` continues it.
    A caller of a branch sees the central queues' tasks and its own branch's only."""
    after = decode_cursor(cursor) if cursor else None
    rows = store.page(conn, queue=queue, status=status, after=after, limit=limit + 1, branch=branch)
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [view(r) for r in rows],
        "next_cursor": encode_cursor(rows[-1]) if more and rows else None,
    }


def claim(
    conn: Connection, task_id: str, *, who: Principal, queues: QueueBook, now: datetime
) -> dict[str, Any]:
    """Claim an open task for `who`. Claiming one's own claimed task again answers it unchanged;
    a task claimed by another, closed or withdrawn, or an operator at capacity, is a Conflict."""
    store.hold_operator(conn, who.username)
    row = store.get(conn, task_id)
    if row is None or not _in_branch(row, who.branch):
        raise NotFound(f"task {task_id} does not exist")
    if row["status"] == CLAIMED and row["claimed_by"] == who.username:
        return view(row)
    if row["status"] != OPEN:
        raise Conflict(_not_open(row))
    held = store.claimed_by(conn, who.username)
    if held >= queues.operator_capacity:
        raise Conflict(
            f"operator at capacity: {held} tasks claimed, {queues.operator_capacity} at most; close one first"
        )
    if not store.claim(conn, task_id, who.username, now):
        raise Conflict(_not_open(store.get(conn, task_id) or row))
    audit.append(conn, at=now, actor=who.username, action="task.claim", target=task_id, details={})
    log.info("task claimed: %s", task_id)
    return get(conn, task_id)


def _not_open(row: dict[str, Any]) -> str:
    if row["status"] == CLAIMED:
        return "the task is claimed by another operator"
    if row["status"] == WITHDRAWN:
        return "the task was withdrawn: its conversation ended"
    return f"the task is {row['status']}"


def close(
    conn: Connection,
    task_id: str,
    *,
    who: Principal,
    supervisor: bool,
    disposition: str,
    note: str | None,
    catalogue: Catalogue,
    now: datetime,
) -> tuple[dict[str, Any], bool]:
    """Close a task with a disposition; returns (the task, whether this was a replay). The claimer
    closes it, or a supervisor. The same closure sent again answers 200 with the task as closed
    (a retry after a lost answer); a different one is a Conflict. The disposition becomes a reaction
    bound to the task, stored through the intake in this transaction."""
    meaning = DISPOSITIONS.get(disposition)
    if meaning is None:
        known = ", ".join(DISPOSITIONS)
        raise InvalidInput("unknown disposition", [ItemError(None, "disposition", f"one of: {known}")])
    if note is not None and contains_pan(note):
        reason = "looks like a payment card number; card numbers are never accepted"
        raise CardNumberRefused("the note holds a card number", [ItemError(None, "note", reason)])
    row = store.get(conn, task_id)
    if row is None or not _in_branch(row, who.branch):
        raise NotFound(f"task {task_id} does not exist")
    if row["status"] == CLOSED:
        if row["disposition"] == disposition and row["note"] == note and _may_close(row, who, supervisor):
            return view(row), True
        raise Conflict(f"the task was closed already (disposition {row['disposition']})")
    if row["claimed_by"] is None:
        raise Conflict(_not_open(row) if row["status"] != OPEN else "claim the task before closing it")
    if not _may_close(row, who, supervisor):
        raise Forbidden("the task is claimed by another operator; only they or a supervisor close it")
    if not store.close(conn, task_id, claimer=row["claimed_by"], disposition=disposition, note=note, now=now):
        raise Conflict("the task changed meanwhile; read it again")
    _react(conn, row, meaning.reaction, actor=who.username, catalogue=catalogue, now=now)
    details = {"disposition": disposition, "reaction": meaning.reaction, "late": row["status"] == WITHDRAWN}
    audit.append(conn, at=now, actor=who.username, action="task.close", target=task_id, details=details)
    log.info("task closed: %s (%s)", task_id, disposition)
    return get(conn, task_id), False


def _may_close(row: dict[str, Any], who: Principal, supervisor: bool) -> bool:
    return supervisor or row["claimed_by"] == who.username


def closure_event_id(task_id: str) -> str:
    """The closure's event id: one per task (a replay of it is the intake's duplicate)."""
    return "task-closed-" + hashlib.sha256(task_id.encode()).hexdigest()[:40]


def _react(
    conn: Connection, row: dict[str, Any], reaction: str, *, actor: str, catalogue: Catalogue, now: datetime
) -> None:
    raw = {
        "event_id": closure_event_id(row["id"]),
        "type": REACTION,
        "occurred_at": now,
        "source": "call_centre",
        "channel": "callcentre",
        "customer_id": row["customer_id"],
        "attributes": {"message_id": row["id"], "reaction": reaction},
    }
    prepared = ingest.prepare([raw], catalogue, ingest.EVENT_KINDS, system=True, pan_scanned=True)
    ingest.ingest(conn, prepared, actor=actor, now=now)
