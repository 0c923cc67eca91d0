"""Identity reconciliation: merge two profiles of one person, and undo a merge.

Under concurrency (PostgreSQL; on SQLite a writer's transaction is the only one):

- merges and unmerges run one at a time: each first moves every conversation counter
  (`store/offsets.py`), which also makes a decision batch decided on a snapshot meanwhile be decided
  again, as for any writer of conversations;
- then a merge locks the two profiles (FOR UPDATE, in id order), which waits for every writer still
  attaching rows to them and holds off the next, and reads them again after the lock;
- a writer that attaches rows to a profile (a PATCH, a consent, an identifier) holds the live
  profile behind its id with FOR KEY SHARE (`hold_live`): a merge waits for it, and a profile merged
  away meanwhile is followed to its survivor before anything is written;
- the intake (services/intake/ingest.py) holds every profile a batch of events refers to in one statement
  (`hold_batch`); a batch that will merge profiles queues with the merges first (`queue_merge`) and
  locks the profiles it merges FOR UPDATE, as `merge_all` does.

Lock order everywhere: conversation counters, then profiles by id, then the audit head.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from ulid import ULID

from omnicrm.domain.errors import Conflict, NotFound
from omnicrm.domain.survivorship import MergeCandidate, choose_survivor, merged_profile
from omnicrm.store import audit, conversations, merging, offsets, profiles
from omnicrm.store.rows import from_json_row, to_jsonable
from omnicrm.store.tables import customers

_NOT_RESTORED = {"id", "created_at", "merged_into", "updated_at", "version"}
_ATTEMPTS = 20
MERGED = "merged"  # the outcome of a conversation a merge ends (its survivor runs one of that scenario)


def new_customer_id() -> str:
    """A new, time-ordered customer id (ULID)."""
    return str(ULID())


def _live(conn: Connection, customer_id: str) -> dict[str, Any]:
    row = profiles.get_customer(conn, customer_id)
    if row is None:
        raise NotFound(f"customer {customer_id} does not exist")
    if row["merged_into"] is not None:
        raise Conflict(f"customer {customer_id} was merged into {row['merged_into']}")
    return row


def _one_merge_at_a_time(conn: Connection) -> None:
    """Queue behind any other merge or unmerge (and any decision batch being written), until this
    transaction ends: every conversation counter moves. A counter row two writers create at once
    is created by one of them; the other moves it."""
    for attempt in range(3):
        savepoint = conn.begin_nested()
        try:
            merging.lock_conversation_counters(conn)
            offsets.touch_conversations(conn, None)
        except IntegrityError:
            savepoint.rollback()
            if attempt == 2:
                raise
            continue
        savepoint.commit()
        return


def queue_merge(conn: Connection) -> None:
    """Queue behind the merges, unmerges and decision batches being written, until this transaction
    ends: what a writer that will merge profiles does before it locks any (lock order)."""
    _one_merge_at_a_time(conn)


def hold_batch(
    conn: Connection, customer_ids: Collection[str], *, to_merge: Collection[str] = ()
) -> dict[str, str]:
    """`hold_live` for many ids at once, in one statement when it can: every id is locked (FOR KEY
    SHARE; those in `to_merge` FOR UPDATE, in a statement before, the caller having queued with
    `queue_merge`) and, after the lock, whom each is merged into is read. An id whose chain of
    merges ends, within the ids locked, at a live profile ends there (each link is held: none can
    be merged or unmerged until the transaction ends); the others (a profile merged away into one
    not asked for, even while we waited) go through `hold_live`. Unknown ids are left out.

    Pass the profiles the ids were found merged into as well (the owners of identifiers beside their
    origins, a customer id beside its root): then a batch needs one statement."""
    if conn.dialect.name == "sqlite":
        return profiles.root_of(conn, customer_ids)  # the only writer: nothing can move under it
    wanted = set(customer_ids)
    exclusive = set(to_merge) & wanted
    merged, found = merging.hold_profiles(conn, exclusive, exclusive=True) if exclusive else ({}, 0)
    more, found_more = merging.hold_profiles(conn, wanted - exclusive, exclusive=False)
    merged.update(more)
    if found + found_more < len(wanted):  # some are no profile at all: find out which the slow way
        return hold_live(conn, wanted)
    roots = {cid: cid for cid in wanted if cid not in merged}
    astray: list[str] = []
    for cid, current in merged.items():
        for _ in range(len(merged)):
            if current not in merged:
                break
            current = merged[current]
        if current in wanted and current not in merged:
            roots[cid] = current
        else:
            astray.append(cid)
    if astray:
        roots.update(hold_live(conn, astray))
    return roots


def hold_live(conn: Connection, customer_ids: Iterable[str], *, exclusive: bool = False) -> dict[str, str]:
    """Map each id to the live profile it ends in (following merges), those profiles locked until
    the transaction ends (`profiles.lock_customers`); unknown ids are left out. A profile merged away
    while we waited for its lock is followed to its survivor (the locks taken are given up first)."""
    wanted = set(customer_ids)
    for _ in range(_ATTEMPTS):
        roots = profiles.root_of(conn, wanted)
        if conn.dialect.name == "sqlite":
            return roots  # the only writer: nothing can move under it
        savepoint = conn.begin_nested()
        locked = profiles.lock_customers(conn, roots.values(), exclusive=exclusive)
        if all(root in locked and locked[root] is None for root in roots.values()):
            savepoint.commit()
            return roots
        savepoint.rollback()
    raise Conflict("these profiles kept being merged while this request waited; try again")


def merge_pair(
    conn: Connection,
    a_id: str,
    b_id: str,
    *,
    reason: str,
    actor: str,
    now: datetime,
    follow: bool = True,
) -> str:
    """Merge two profiles by the survivorship rules; returns the survivor's id.

    `follow` (identifiers shared by two profiles, ingest): a profile merged away, even while this
    waited, stands for the live profile it was merged into, and two ids already one person are left
    as they are. Otherwise (an operator's merge) both must be live after the lock, or Conflict."""
    _one_merge_at_a_time(conn)
    if follow:
        roots = hold_live(conn, [a_id, b_id], exclusive=True)
        for cid in (a_id, b_id):
            if cid not in roots:
                raise NotFound(f"customer {cid} does not exist")
        if roots[a_id] == roots[b_id] and a_id != b_id:
            return roots[a_id]
        a_id, b_id = roots[a_id], roots[b_id]
    else:
        profiles.lock_customers(conn, [a_id, b_id], exclusive=True)
    a, b = _live(conn, a_id), _live(conn, b_id)
    if a_id == b_id:
        raise Conflict("a profile cannot be merged with itself")
    survivor, merged = choose_survivor(
        MergeCandidate(a["id"], a["status"], a["created_at"]),
        MergeCandidate(b["id"], b["status"], b["created_at"]),
    )
    return _merge_locked(
        conn, survivor_id=survivor.id, merged_id=merged.id, reason=reason, actor=actor, now=now
    )


def merge_all(conn: Connection, customer_ids: list[str], *, reason: str, actor: str, now: datetime) -> str:
    """Merge several profiles of one person (following merges, as `merge_pair`); returns the survivor.
    Every profile is locked at once, in id order, before the first merge."""
    _one_merge_at_a_time(conn)
    hold_live(conn, customer_ids, exclusive=True)
    survivor = customer_ids[0]
    for other in customer_ids[1:]:
        survivor = merge_pair(conn, survivor, other, reason=reason, actor=actor, now=now)
    return survivor


def merge(
    conn: Connection, *, survivor_id: str, merged_id: str, reason: str, actor: str, now: datetime
) -> str:
    """Fold `merged_id` into `survivor_id`: fields, identifiers, history; log it so it can be undone."""
    _one_merge_at_a_time(conn)
    profiles.lock_customers(conn, [survivor_id, merged_id], exclusive=True)
    return _merge_locked(
        conn, survivor_id=survivor_id, merged_id=merged_id, reason=reason, actor=actor, now=now
    )


def _take_over_conversations(
    conn: Connection, survivor_id: str, merged_id: str, now: datetime
) -> dict[str, Any]:
    """The merged profile's running conversations: the survivor takes over those of a scenario it
    does not run; the others end (outcome `merged`), their waiting messages withdrawn. Returns what
    an unmerge needs to undo it."""
    running = conversations.active_instances_of(conn, merged_id)
    busy = {r["scenario_id"] for r in conversations.active_instances_of(conn, survivor_id)}
    taken = [r["id"] for r in running if r["scenario_id"] not in busy]
    ending = [r for r in running if r["scenario_id"] in busy]
    conversations.move_instances(conn, taken, survivor_id, now)
    withdrawn = conversations.end_instances(conn, [r["id"] for r in ending], outcome=MERGED, now=now)
    ended = [
        {
            "id": r["id"],
            "step": r["step"],
            "due_at": to_jsonable(r["due_at"]),
            "withdrawn": withdrawn[r["id"]],
        }
        for r in ending
    ]
    return {"taken": taken, "ended": ended}


def _merge_locked(
    conn: Connection, *, survivor_id: str, merged_id: str, reason: str, actor: str, now: datetime
) -> str:
    survivor, merged = _live(conn, survivor_id), _live(conn, merged_id)
    if survivor_id == merged_id:
        raise Conflict("a profile cannot be merged with itself")
    changes = merged_profile(survivor, merged)
    snapshot = {
        "survivor": {k: to_jsonable(v) for k, v in survivor.items()},
        "merged": {k: to_jsonable(v) for k, v in merged.items()},
        "changes": {k: to_jsonable(v) for k, v in changes.items()},
        "survivor_segments": profiles.segments_of(conn, survivor_id),
        "merged_segments": profiles.segments_of(conn, merged_id),
    }
    profiles.update_customer(conn, survivor_id, changes, now)
    moved = merging.move_rows(conn, from_id=merged_id, to_id=survivor_id)
    snapshot["conversations"] = talks = _take_over_conversations(conn, survivor_id, merged_id, now)
    moved["conversations_taken_over"] = len(talks["taken"])
    moved["conversations_ended"] = len(talks["ended"])
    profiles.update_customer(conn, merged_id, {"merged_into": survivor_id}, now)
    merge_id = merging.record_merge(
        conn,
        survivor_id=survivor_id,
        merged_id=merged_id,
        reason=reason,
        snapshot=snapshot,
        actor=actor,
        now=now,
    )
    audit.append(
        conn,
        at=now,
        actor=actor,
        action="customer.merged",
        target=survivor_id,
        details={"merge_id": merge_id, "merged_id": merged_id, "reason": reason, "moved": moved},
    )
    return survivor_id


def _give_back_conversations(
    conn: Connection, record: dict[str, Any], customer_id: str, now: datetime
) -> dict[str, int]:
    """Undo what the merge did to `customer_id`'s conversations: those taken over come back (from
    wherever the survivor's merges took them, if still running), those it ended run again from
    where they stood with their withdrawn messages queued again; and any of its running
    conversations left without a timer (cleared while merged away) is due now."""
    talks = record["snapshot"].get("conversations", {})
    survivor_root = profiles.root_of(conn, [str(record["survivor_id"])]).get(str(record["survivor_id"]))
    mine = {scenario for _, scenario, _ in conversations.active_of(conn, [customer_id])}
    back = [
        row["id"]
        for row in conversations.instances_of(conn, [survivor_root] if survivor_root else [])
        if row["id"] in set(talks.get("taken", []))
        and row["status"] == "active"
        and row["scenario_id"] not in mine
    ]
    conversations.move_instances(conn, back, customer_id, now)
    states = [
        {**state, "due_at": datetime.fromisoformat(state["due_at"]) if state.get("due_at") else None}
        for state in talks.get("ended", [])
    ]
    reopened = set(conversations.reopen_instances(conn, states, ended_by=MERGED, now=now))
    requeued = conversations.requeue_messages(
        conn, [i for state in states if state["id"] in reopened for i in state.get("withdrawn", [])], now
    )
    woken = conversations.wake_stalled(conn, [customer_id], now)
    return {
        "conversations_given_back": len(back),
        "conversations_reopened": len(reopened),
        "messages_requeued": requeued,
        "conversations_due_again": woken,
    }


def unmerge(conn: Connection, *, customer_id: str, actor: str, now: datetime) -> str:
    """Undo the merge that folded `customer_id` into another profile; returns the former survivor."""
    _one_merge_at_a_time(conn)
    record = merging.open_merge_of(conn, customer_id)
    if record is None:
        raise Conflict(f"customer {customer_id} is not merged into another profile")
    snapshot = record["snapshot"]
    if snapshot.get("erased"):  # data subjects' rights: the snapshot's values were erased with the person
        raise Conflict(f"customer {customer_id} was erased: the merge cannot be undone")
    survivor_id = str(record["survivor_id"])
    survivor_root = profiles.root_of(conn, [survivor_id]).get(survivor_id, survivor_id)
    profiles.lock_customers(conn, [customer_id, survivor_id, survivor_root], exclusive=True)
    moved: dict[str, int] = merging.give_back(
        conn, origin_ids=merging.descendants(conn, customer_id), to_id=customer_id
    )
    restored = {k: v for k, v in snapshot["merged"].items() if k not in _NOT_RESTORED}
    profiles.update_customer(
        conn, customer_id, {**from_json_row(customers, restored), "merged_into": None}, now
    )
    moved.update(_give_back_conversations(conn, record, customer_id, now))
    survivor = profiles.get_customer(conn, survivor_id) or {}
    reverted = {
        field: snapshot["survivor"].get(field)
        for field, value in snapshot["changes"].items()
        if to_jsonable(survivor.get(field)) == value
    }
    profiles.update_customer(conn, survivor_id, from_json_row(customers, reverted), now)
    brought = set(snapshot["merged_segments"]) - set(snapshot["survivor_segments"])
    profiles.set_segments(conn, survivor_id, set(profiles.segments_of(conn, survivor_id)) - brought)
    profiles.set_segments(conn, customer_id, snapshot["merged_segments"])
    merging.mark_undone(conn, record["id"], actor=actor, now=now)
    audit.append(
        conn,
        at=now,
        actor=actor,
        action="customer.unmerged",
        target=customer_id,
        details={"merge_id": record["id"], "survivor_id": survivor_id, "moved": moved},
    )
    return survivor_id
