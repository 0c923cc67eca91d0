"""Identity reconciliation: merge two profiles of one person, and undo a merge."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection
from ulid import ULID

from omnicrm.domain.errors import Conflict, NotFound
from omnicrm.domain.survivorship import MergeCandidate, choose_survivor, merged_profile
from omnicrm.store import audit, merging, profiles
from omnicrm.store.rows import from_json_row, to_jsonable
from omnicrm.store.tables import customers

_NOT_RESTORED = {"id", "created_at", "merged_into", "updated_at", "version"}


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


def merge_pair(conn: Connection, a_id: str, b_id: str, *, reason: str, actor: str, now: datetime) -> str:
    """Merge two live profiles by the survivorship rules; returns the survivor's id."""
    a, b = _live(conn, a_id), _live(conn, b_id)
    if a_id == b_id:
        raise Conflict("a profile cannot be merged with itself")
    survivor, merged = choose_survivor(
        MergeCandidate(a["id"], a["status"], a["created_at"]),
        MergeCandidate(b["id"], b["status"], b["created_at"]),
    )
    return merge(conn, survivor_id=survivor.id, merged_id=merged.id, reason=reason, actor=actor, now=now)


def merge(
    conn: Connection, *, survivor_id: str, merged_id: str, reason: str, actor: str, now: datetime
) -> str:
    """Fold `merged_id` into `survivor_id`: fields, identifiers, history; log it so it can be undone."""
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


def unmerge(conn: Connection, *, customer_id: str, actor: str, now: datetime) -> str:
    """Undo the merge that folded `customer_id` into another profile; returns the former survivor."""
    record = merging.open_merge_of(conn, customer_id)
    if record is None:
        raise Conflict(f"customer {customer_id} is not merged into another profile")
    snapshot = record["snapshot"]
    survivor_id = str(record["survivor_id"])
    moved = merging.give_back(conn, origin_ids=merging.descendants(conn, customer_id), to_id=customer_id)
    restored = {k: v for k, v in snapshot["merged"].items() if k not in _NOT_RESTORED}
    profiles.update_customer(
        conn, customer_id, {**from_json_row(customers, restored), "merged_into": None}, now
    )
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
