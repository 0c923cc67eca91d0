"""Decisions, scenario instances, the outbox and the queued events they are decided from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.engine import Connection, Dialect

from omnicrm.domain.lifecycle import QUEUED, WITHDRAWN
from omnicrm.store import offsets, tasks
from omnicrm.store.bulk import StoredRows, fetch, insert_stored, stored_rows
from omnicrm.store.profiles import among, among_bound, bound_values, chunks, shaped
from omnicrm.store.tables import decisions, events, instances, outbox


def decisions_of(conn: Connection, customer_id: str, limit: int) -> list[dict[str, Any]]:
    query = (
        select(decisions)
        .where(decisions.c.customer_id == customer_id)
        .order_by(decisions.c.decided_at.desc(), decisions.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def step_decisions_of(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    """The steps of this person's conversations that were held, skipped or cancelled, oldest first."""
    query = (
        select(decisions)
        .where(decisions.c.customer_id == customer_id, decisions.c.step.is_not(None))
        .order_by(decisions.c.decided_at, decisions.c.id)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


_INSTANCE_COLUMNS = tuple(column.key for column in instances.c)
_MUTABLE = (
    "step",
    "status",
    "due_at",
    "last_reaction",
    "outcome",
    "goal_reached",
    "updated_at",
    "ended_at",
    "awaiting",
)
_SAVE = (
    update(instances)
    .where(instances.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in _MUTABLE})
)


@dataclass(frozen=True, slots=True)
class BatchWrite:
    """Everything one decision batch writes, built by `prepare_batch` - pure Python, so before the
    write lock is taken (it was a third of the time a 40,000-event batch held it) - and written by
    `write_batch` inside it."""

    started_by: tuple[str, ...]  # owners of the new instances (their conversation counters move)
    new: StoredRows  # instances started in the batch
    moved_by: tuple[str, ...]  # owners of the instances whose state moved
    moved: list[dict[str, Any]]  # their new state, as `_SAVE`'s parameters
    messages: StoredRows  # outbox
    ended: dict[str, list[str]]  # why -> conversations ended so: their queued messages are withdrawn
    ended_by: list[str] | None  # their owners, when known
    now: datetime | None
    yielded: dict[str, str]  # idempotency key -> why this queued message gave up its slot
    decided: StoredRows  # decisions


def prepare_batch(
    dialect: Dialect,
    *,
    new: list[dict[str, Any]],
    moved: list[dict[str, Any]],
    messages: list[dict[str, Any]],
    decided: list[dict[str, Any]],
    ended: dict[str, str],
    ended_by: set[str] | None,
    now: datetime | None = None,
    yielded: dict[str, str] | None = None,
) -> BatchWrite:
    reasons: dict[str, list[str]] = {}
    for instance_id, why in sorted(ended.items()):
        reasons.setdefault(why, []).append(instance_id)
    return BatchWrite(
        started_by=tuple(r["customer_id"] for r in new),
        new=stored_rows(dialect, instances, [{c: row.get(c) for c in _INSTANCE_COLUMNS} for row in new]),
        moved_by=tuple(r["customer_id"] for r in moved),
        moved=[{"b_id": r["id"], **{f"b_{n}": r.get(n) for n in _MUTABLE}} for r in moved],
        messages=stored_rows(dialect, outbox, messages),
        ended=reasons,
        ended_by=sorted(ended_by) if ended_by is not None else None,
        now=now,
        yielded=dict(yielded or {}),
        decided=stored_rows(dialect, decisions, decided),
    )


def write_batch(conn: Connection, batch: BatchWrite) -> None:
    """Write a prepared batch in a handful of bulk statements (in the caller's transaction)."""
    if batch.started_by:
        offsets.touch_conversations(conn, batch.started_by)
        insert_stored(conn, batch.new)
    if batch.moved:
        offsets.touch_conversations(conn, batch.moved_by)
        conn.execute(_SAVE, batch.moved)
    insert_stored(conn, batch.messages)
    for why, ended in batch.ended.items():
        withdraw_queued(conn, ended, batch.ended_by, reason=why, now=batch.now)
        tasks.withdraw_of_instances(conn, ended, batch.ended_by, reason=why, now=batch.now)
    if batch.yielded:
        conn.execute(
            update(outbox)
            .where(outbox.c.idempotency_key == bindparam("b_key"), outbox.c.status == QUEUED)
            .values(status=WITHDRAWN, status_reason=bindparam("b_reason"), status_at=batch.now),
            [{"b_key": key, "b_reason": why[:300]} for key, why in sorted(batch.yielded.items())],
        )
    insert_stored(conn, batch.decided)


def instances_of(conn: Connection, customer_ids: Iterable[str]) -> list[dict[str, Any]]:
    wanted = sorted(set(customer_ids))
    if not wanted:
        return []
    dialect = conn.dialect.name
    query = shaped(
        ("instances_of", dialect),
        lambda: (
            select(instances)
            .where(among_bound(instances.c.customer_id, "ids")[dialect])
            .order_by(instances.c.id)
        ),
    )
    rows = fetch(conn, query, {"ids": bound_values(conn, wanted)})
    return [dict(zip(_INSTANCE_COLUMNS, row, strict=True)) for row in rows]


def active_of(conn: Connection, customer_ids: Iterable[str]) -> list[tuple[str, str, int]]:
    """(customer_id, scenario_id, scenario_version) of these people's running conversations."""
    wanted = sorted(set(customer_ids))
    if not wanted:
        return []
    columns = (instances.c.customer_id, instances.c.scenario_id, instances.c.scenario_version)
    dialect = conn.dialect.name
    # Status is tested here: in SQL it leads SQLite to walk the timer index over every running one.
    query = shaped(
        ("active_of", dialect),
        lambda: select(*columns, instances.c.status).where(
            among_bound(instances.c.customer_id, "ids")[dialect]
        ),
    )
    rows = fetch(conn, query, {"ids": bound_values(conn, wanted)})
    return [(cid, sid, version) for cid, sid, version, status in rows if status == "active"]


def due_instances(conn: Connection, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Active instances whose timer has expired; on PostgreSQL rows locked by another worker are skipped."""
    query = (
        select(instances)
        .where(instances.c.status == "active", instances.c.due_at <= now)
        .order_by(instances.c.due_at, instances.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [dict(r._mapping) for r in conn.execute(query)]


def withdraw_queued(
    conn: Connection,
    instance_ids: Iterable[str],
    customer_ids: Iterable[str] | None = None,
    *,
    reason: str,
    now: datetime | None,
) -> int:
    """Queued messages of conversations that ended for `reason` (goal reached, a hard rule) are
    withdrawn: they never leave, and say why.

    `customer_ids`, the owners of these conversations (an outbox row belongs to its conversation's
    customer; neither moves in a merge), let the database find the rows by customer index instead of
    reading the whole outbox, which has no index on instance_id."""
    wanted = sorted(set(instance_ids))
    if not wanted:
        return 0
    values = {"status": WITHDRAWN, "status_reason": reason[:300], "status_at": now}
    if customer_ids is not None:
        owners = sorted(set(customer_ids))
        # `status || ''` (the same test: status is never null) keeps SQLite's planner off the status
        # index, which it prefers to the customer index even when every message is queued.
        result = conn.execute(
            update(outbox)
            .where(
                among(conn, outbox.c.customer_id, owners),
                among(conn, outbox.c.instance_id, wanted),
                outbox.c.status.concat("") == QUEUED,
            )
            .values(values)
        )
        return int(result.rowcount)
    withdrawn = 0
    for part in chunks(wanted):
        result = conn.execute(
            update(outbox).where(outbox.c.instance_id.in_(part), outbox.c.status == QUEUED).values(values)
        )
        withdrawn += result.rowcount
    return withdrawn


def withdraw_channel(
    conn: Connection, customer_id: str, channels: Iterable[str], *, reason: str, now: datetime
) -> int:
    """An opt-out: this person's queued marketing (non-service) messages on these channels never leave
    (nor their marketing call-centre tasks, once opened: they are withdrawn too)."""
    wanted = sorted(set(channels))
    result = conn.execute(
        update(outbox)
        .where(
            outbox.c.customer_id == customer_id,
            outbox.c.channel.in_(wanted),
            outbox.c.purpose != "service",
            outbox.c.status == QUEUED,
        )
        .values(status=WITHDRAWN, status_reason=reason[:300], status_at=now)
    )
    calls = tasks.withdraw_marketing_calls(conn, customer_id, reason=reason) if "callcentre" in wanted else 0
    return int(result.rowcount) + calls


def recent_contacts(
    conn: Connection, customer_ids: Iterable[str], since: datetime, until: datetime | None = None
) -> list[dict[str, Any]]:
    keys = ("customer_id", "channel", "purpose", "created_at")
    return [dict(zip(keys, row, strict=True)) for row in contact_tuples(conn, customer_ids, since, until)]


def _window(conn: Connection, wanted: list[str], since: datetime, until: datetime | None) -> dict[str, Any]:
    """The parameters of a look-up of these people's rows since `since` (and up to `until`)."""
    params: dict[str, Any] = {"ids": bound_values(conn, wanted), "since": since}
    if until is not None:
        params["until"] = until
    return params


def contact_tuples(
    conn: Connection, customer_ids: Iterable[str], since: datetime, until: datetime | None = None
) -> list[tuple[str, str, str, datetime]]:
    """(customer_id, channel, purpose, created_at) of the messages and tasks not withdrawn since `since`."""
    wanted = sorted(set(customer_ids))
    if not wanted:
        return []
    dialect = conn.dialect.name

    def build() -> Select[Any]:
        query = select(outbox.c.customer_id, outbox.c.channel, outbox.c.purpose, outbox.c.created_at)
        query = query.where(
            among_bound(outbox.c.customer_id, "ids")[dialect],
            outbox.c.created_at >= bindparam("since"),
            outbox.c.status != WITHDRAWN,
        )
        return query if until is None else query.where(outbox.c.created_at <= bindparam("until"))

    query = shaped(("contact_tuples", dialect, until is None), build)
    params = _window(conn, wanted, since, until)
    return [tuple(row) for row in fetch(conn, query, params)]


def pending_contacts(
    conn: Connection, customer_ids: Iterable[str], since: datetime, until: datetime | None = None
) -> list[tuple[str, str, str, datetime, str, str]]:
    """(instance_id, channel, purpose, created_at, idempotency_key, customer_id) of the conversations'
    messages and tasks still waiting to go out since `since`: those a reached goal withdraws
    (`withdraw_queued`), and those a contact of higher priority may take the slot of."""
    wanted = sorted(set(customer_ids))
    if not wanted:
        return []
    dialect = conn.dialect.name

    def build() -> Select[Any]:
        query = select(
            outbox.c.instance_id,
            outbox.c.channel,
            outbox.c.purpose,
            outbox.c.created_at,
            outbox.c.idempotency_key,
            outbox.c.customer_id,
        ).where(
            among_bound(outbox.c.customer_id, "ids")[dialect],
            outbox.c.created_at >= bindparam("since"),
            outbox.c.status.concat("") == QUEUED,  # as in withdraw_queued: the customer index, please
            outbox.c.instance_id.is_not(None),
        )
        return query if until is None else query.where(outbox.c.created_at <= bindparam("until"))

    query = shaped(("pending_contacts", dialect, until is None), build)
    params = _window(conn, wanted, since, until)
    return [tuple(row) for row in fetch(conn, query, params)]


def outbox_by_key(conn: Connection, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for part in chunks(sorted(set(keys))):
        for row in conn.execute(select(outbox).where(outbox.c.idempotency_key.in_(part))):
            found[row.idempotency_key] = dict(row._mapping)
    return found


def outbox_of(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    query = select(outbox).where(outbox.c.customer_id == customer_id).order_by(outbox.c.id)
    return [dict(r._mapping) for r in conn.execute(query)]


# What the decision worker reads of each queued event (not received_at: parsing it costs, nobody reads it)
_QUEUED = tuple(c for c in events.c if c.key != "received_at")
_QUEUED_KEYS = tuple(c.key for c in _QUEUED)


def owners_after(
    conn: Connection, last_pk: int, limit: int, upto: int | None = None
) -> list[tuple[int, str]]:
    """(id, customer_id) of the next queued events: what a partition reads to find its own, before
    reading only those in full (`events_by_id`), not every event's attributes."""
    query = select(events.c.id, events.c.customer_id).where(events.c.id > last_pk).order_by(events.c.id)
    if upto is not None:
        query = query.where(events.c.id <= upto)
    return [(pk, cid) for pk, cid in conn.execute(query.limit(limit)).all()]


def events_by_id(conn: Connection, pks: list[int]) -> list[dict[str, Any]]:
    """Queued events by primary key, in queue order."""
    if not pks:
        return []
    query = select(*_QUEUED).where(among(conn, events.c.id, pks)).order_by(events.c.id)
    return [dict(zip(_QUEUED_KEYS, row, strict=True)) for row in fetch(conn, query)]


def events_after(conn: Connection, last_pk: int, limit: int, upto: int | None = None) -> list[dict[str, Any]]:
    query = select(*_QUEUED).where(events.c.id > last_pk).order_by(events.c.id).limit(limit)
    if upto is not None:
        query = query.where(events.c.id <= upto)
    return [dict(zip(_QUEUED_KEYS, row, strict=True)) for row in fetch(conn, query)]


def events_of(
    conn: Connection,
    customer_ids: Iterable[str],
    since: datetime,
    types: Iterable[str] = (),
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    keys = ("customer_id", "event_id", "type", "occurred_at", "channel", "attributes")
    rows = event_tuples(conn, customer_ids, since, types, until)
    return [dict(zip(keys, row, strict=True)) for row in rows]


def event_tuples(
    conn: Connection,
    customer_ids: Iterable[str],
    since: datetime,
    types: Iterable[str] = (),
    until: datetime | None = None,
    before: int | None = None,
) -> list[tuple[str, str, str, datetime, str | None, dict[str, Any]]]:
    """(customer_id, event_id, type, occurred_at, channel, attributes) of these people's events since
    `since` (and up to `until`; stored before the event of primary key `before`), oldest first for
    each person."""
    wanted = sorted(set(customer_ids))
    if not wanted:
        return []
    kinds = sorted(set(types))
    dialect = conn.dialect.name

    def build() -> Select[Any]:
        query = select(*_EVENT_TUPLE).where(
            among_bound(events.c.customer_id, "ids")[dialect], events.c.occurred_at >= bindparam("since")
        )
        if kinds:
            query = query.where(events.c.type.in_(bindparam("types", expanding=True)))
        if until is not None:
            query = query.where(events.c.occurred_at <= bindparam("until"))
        if before is not None:
            query = query.where(events.c.id < bindparam("before"))
        return query.order_by(events.c.occurred_at, events.c.id)

    query = shaped(("event_tuples", dialect, bool(kinds), until is None, before is None), build)
    params = _window(conn, wanted, since, until)
    if kinds:
        params["types"] = kinds
    if before is not None:
        params["before"] = before
    return [tuple(row) for row in fetch(conn, query, params)]


_EVENT_TUPLE = (
    events.c.customer_id,
    events.c.event_id,
    events.c.type,
    events.c.occurred_at,
    events.c.channel,
    events.c.attributes,
)


# --- conversations at a merge and its undo (services/profiles/identity.py) ------------------------------
# Messages not yet handed to a channel, and what withdrawing one makes of it, in the outbox's words
# before and after they were renamed (domain/lifecycle.py: queued -> withdrawn).
_WITHDRAW = {"pending": "cancelled", "queued": "withdrawn"}
_REQUEUE = {withdrawn: waiting for waiting, withdrawn in _WITHDRAW.items()}


def active_instances_of(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    """This person's running conversations, locked until the transaction ends (on PostgreSQL)."""
    query = (
        select(instances)
        .where(instances.c.customer_id == customer_id, instances.c.status == "active")
        .order_by(instances.c.id)
        .with_for_update()
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def move_instances(conn: Connection, instance_ids: Iterable[str], to_id: str, now: datetime) -> None:
    """Hand these conversations, and their messages and tasks, to another profile (an outbox row
    belongs to its conversation's customer: `cancel_pending` finds it by that customer)."""
    wanted = sorted(set(instance_ids))
    for part in chunks(wanted):
        conn.execute(
            update(instances).where(instances.c.id.in_(part)).values(customer_id=to_id, updated_at=now)
        )
        conn.execute(update(outbox).where(outbox.c.instance_id.in_(part)).values(customer_id=to_id))


def _status_values(status: str, reason: str | None, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"status": status}
    if "status_reason" in outbox.c:  # the message lifecycle's columns, where the schema has them
        values["status_reason"] = reason
    if "status_at" in outbox.c:
        values["status_at"] = now
    return values


def end_instances(
    conn: Connection, instance_ids: Iterable[str], *, outcome: str, now: datetime
) -> dict[str, list[int]]:
    """End these running conversations with `outcome` and withdraw their messages still waiting to
    go out; returns each conversation's withdrawn outbox ids (what an undo puts back)."""
    wanted = sorted(set(instance_ids))
    withdrawn: dict[str, list[int]] = {i: [] for i in wanted}
    for part in chunks(wanted):
        conn.execute(
            update(instances)
            .where(instances.c.id.in_(part), instances.c.status == "active")
            .values(status="cancelled", outcome=outcome, due_at=None, ended_at=now, updated_at=now)
        )
        waiting = conn.execute(
            select(outbox.c.id, outbox.c.instance_id, outbox.c.status).where(
                outbox.c.instance_id.in_(part), outbox.c.status.in_(sorted(_WITHDRAW))
            )
        ).all()
        for status in sorted({row.status for row in waiting}):
            ids = [row.id for row in waiting if row.status == status]
            values = _status_values(_WITHDRAW[status], outcome, now)
            conn.execute(
                update(outbox).where(outbox.c.id.in_(ids), outbox.c.status == status).values(**values)
            )
        for row in waiting:
            withdrawn[row.instance_id].append(int(row.id))
        tasks.withdraw_of_instances(conn, part, reason=outcome, now=now)
    return withdrawn


def reopen_instances(
    conn: Connection, states: Iterable[dict[str, Any]], *, ended_by: str, now: datetime
) -> list[str]:
    """Put conversations ended with outcome `ended_by` back as they were (`states`: id, step,
    due_at), if their profile runs no other conversation of that scenario; a conversation without
    a timer is due now, so the timer runs its current step. Returns the ids reopened."""
    reopened: list[str] = []
    for state in states:
        row = conn.execute(select(instances).where(instances.c.id == state["id"])).first()
        if row is None or row.status == "active" or row.outcome != ended_by:
            continue
        busy = conn.execute(
            select(instances.c.id).where(
                instances.c.customer_id == row.customer_id,
                instances.c.scenario_id == row.scenario_id,
                instances.c.status == "active",
            )
        ).first()
        if busy is not None:
            continue
        conn.execute(
            update(instances)
            .where(instances.c.id == row.id)
            .values(
                status="active",
                outcome=None,
                ended_at=None,
                step=state.get("step") or row.step,
                due_at=state.get("due_at") or now,
                updated_at=now,
            )
        )
        reopened.append(str(row.id))
    return reopened


def requeue_messages(conn: Connection, outbox_ids: Iterable[int], now: datetime) -> int:
    """Put withdrawn messages back in the queue (those still withdrawn); returns how many."""
    wanted = sorted(set(outbox_ids))
    count = 0
    for part in chunks(wanted):
        for withdrawn, waiting in _REQUEUE.items():
            result = conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(part), outbox.c.status == withdrawn)
                .values(**_status_values(waiting, None, now))
            )
            count += result.rowcount
    return count


def wake_stalled(conn: Connection, customer_ids: Iterable[str], now: datetime) -> int:
    """Running conversations of these people without a timer (cleared while their profile was merged
    away: nothing could move them) become due now, so the timer runs their current step again."""
    wanted = sorted(set(customer_ids))
    if not wanted:
        return 0
    result = conn.execute(
        update(instances)
        .where(
            instances.c.customer_id.in_(wanted), instances.c.status == "active", instances.c.due_at.is_(None)
        )
        .values(due_at=now, updated_at=now)
    )
    return int(result.rowcount)
