"""The append-only audit log: a chain keyed with HMAC-SHA256, a sealed head, a verified checkpoint.

Why each part: the key (OMNICRM_AUDIT_KEY, `audit_key.py`) stops anyone who can write to the
database but does not hold the key from recomputing hashes after an edit; the head seals the last
id, the count and the last hash, so deleting the newest entries, or all of them, shows; the
checkpoint lets the common check walk only what was appended since the last intact verification.
Appends lock the head row, so concurrent appends (PostgreSQL) form one chain. An append onto a head
whose seal fails records `tampered_since` under a fresh seal: a later append cannot launder it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Row

from omnicrm.store.audit_digest import (
    GENESIS,
    checkpoint_mac,
    entry_digest,
    head_mac,
    legacy_digest,
    same,
)
from omnicrm.store.audit_key import key_for
from omnicrm.store.tables import audit_head, audit_log

__all__ = ["GENESIS", "Verdict", "append", "entries", "entry_digest", "head", "save_checkpoint", "verify"]


def _head_row(conn: Connection, *, lock: bool = False) -> Row[Any]:
    query = select(audit_head).where(audit_head.c.id == 1)
    return conn.execute(query.with_for_update() if lock else query).one()


def _row_mac(key: bytes, row: Row[Any]) -> str:
    """The MAC the head row should carry for what it holds."""
    return head_mac(
        key,
        last_id=row.last_id,
        entry_count=row.entry_count,
        last_hash=row.last_hash,
        at=row.at,
        legacy_last_id=row.legacy_last_id,
        tampered_since=row.tampered_since,
    )


def _head_sealed(key: bytes, row: Row[Any]) -> bool:
    return same(row.mac, _row_mac(key, row))


def seal_head(conn: Connection) -> None:
    """Seal the head as it stands (migration 0006: the legacy boundary, before any keyed entry)."""
    key, row = key_for(conn.engine), _head_row(conn, lock=True)
    mac = _row_mac(key, row)
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(mac=mac))


def append(
    conn: Connection, *, at: datetime, actor: str, action: str, target: str | None, details: dict[str, Any]
) -> None:
    """Append one entry; the head row is locked so concurrent appends form one chain."""
    key = key_for(conn.engine)
    at = at.astimezone(UTC)
    row = _head_row(conn, lock=True)
    top = conn.execute(select(func.max(audit_log.c.id))).scalar_one() or 0
    entry_id = max(row.last_id, top) + 1  # never reuse an id, even after the head was rewound
    tampered = row.tampered_since
    if tampered is None and not _head_sealed(key, row):
        tampered = entry_id
    digest = entry_digest(key, row.last_hash, entry_id, at, actor, action, target, details)
    conn.execute(
        audit_log.insert().values(
            id=entry_id,
            at=at,
            actor=actor,
            action=action,
            target=target,
            details=details,
            prev_hash=row.last_hash,
            hash=digest,
        )
    )
    values: dict[str, Any] = {
        "last_id": entry_id,
        "entry_count": row.entry_count + 1,
        "last_hash": digest,
        "at": at,
        "legacy_last_id": row.legacy_last_id,
        "tampered_since": tampered,
    }
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(**values, mac=head_mac(key, **values)))


def head(conn: Connection) -> dict[str, Any]:
    """Where the chain ends: what a bank copies outside the database to anchor it."""
    row = _head_row(conn)
    return {"last_id": row.last_id, "count": row.entry_count, "hash": row.last_hash, "at": row.at}


class Verdict(NamedTuple):
    """The outcome of a verification; `intact` first, so `verify(conn)[0]` reads as before."""

    intact: bool
    entries_checked: int
    entries: int = 0  # how many entries the head counts
    first_bad_id: int | None = None
    reason: str | None = None
    full: bool = False
    through: tuple[int, int, str] | None = None  # (id, count, hash) newly found intact

    def as_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "full": self.full,
            "entries": self.entries,
            "entries_checked": self.entries_checked,
            "first_bad_id": self.first_bad_id,
            "reason": self.reason,
        }


class _Start(NamedTuple):
    after_id: int
    prev: str
    entries: int


def _digest_of(key: bytes, legacy_last_id: int, row: Any) -> str:
    if row.id <= legacy_last_id:
        return legacy_digest(row.prev_hash, row.at, row.actor, row.action, row.target, row.details)
    return entry_digest(key, row.prev_hash, row.id, row.at, row.actor, row.action, row.target, row.details)


def _start(conn: Connection, key: bytes, hd: Row[Any], full: bool) -> _Start | tuple[int | None, str]:
    """Where to walk from: the checkpoint if it is sealed and still in place, else the beginning;
    (first bad id, reason) when the checkpoint shows the log lost what was verified."""
    if full or not hd.checked_id or hd.checked_at is None:
        return _Start(0, GENESIS, 0)
    sealed = checkpoint_mac(
        key,
        checked_id=hd.checked_id,
        checked_count=hd.checked_count,
        checked_hash=hd.checked_hash,
        at=hd.checked_at,
    )
    if not same(hd.checked_mac, sealed):
        return _Start(0, GENESIS, 0)  # the checkpoint is a shortcut, not evidence: walk it all
    if hd.checked_id > hd.last_id or hd.checked_count > hd.entry_count:
        return hd.last_id + 1, "the head is behind the last verified point: entries were removed"
    stored = conn.execute(
        select(audit_log.c.hash).where(audit_log.c.id == hd.checked_id)
    ).scalar_one_or_none()
    if stored is None:
        before = conn.execute(select(func.max(audit_log.c.id)).where(audit_log.c.id < hd.checked_id))
        return (before.scalar_one() or 0) + 1, "verified entries are missing"
    if stored != hd.checked_hash:
        return hd.checked_id, "a verified entry was altered"
    return _Start(hd.checked_id, hd.checked_hash, hd.checked_count)


def verify(conn: Connection, *, full: bool = False) -> Verdict:
    """Walk the chain from the checkpoint (or, `full` or when the head's seal fails, from the
    start) to the head, check the head's seal and compare the count; the first entry found wrong
    is reported, so that an edit is located even when the head was edited along with it."""
    key, hd = key_for(conn.engine), _head_row(conn)

    def broken(bad: int | None, reason: str, checked: int = 0) -> Verdict:
        return Verdict(False, checked, hd.entry_count, bad, reason, full)

    sealed = _head_sealed(key, hd)
    start = _start(conn, key, hd, full or not sealed or hd.tampered_since is not None)
    if not isinstance(start, _Start):
        return broken(*start)
    prev, last, count, walked = start.prev, start.after_id, start.entries, 0
    query = select(audit_log).where(audit_log.c.id > start.after_id, audit_log.c.id <= hd.last_id)
    for row in conn.execute(query.order_by(audit_log.c.id).execution_options(yield_per=2000)):
        if row.prev_hash != prev:
            return broken(row.id, "the entry before this one is missing or was altered", walked)
        if row.hash != _digest_of(key, hd.legacy_last_id, row):
            return broken(row.id, "this entry was altered", walked)
        prev, last, count, walked = row.hash, row.id, count + 1, walked + 1
    if not sealed:  # the walk found no entry to blame: the head itself was edited
        return broken(None, "the head of the log was altered (or the audit key changed)", walked)
    if hd.tampered_since is not None:
        return broken(hd.tampered_since, "entries were appended onto an altered head", walked)
    if last != hd.last_id or prev != hd.last_hash:
        return broken(last + 1, f"the log ends at entry {last}, the head names entry {hd.last_id}", walked)
    stored = count if full else _stored(conn, hd.last_id)
    if count != hd.entry_count or stored != hd.entry_count:
        return broken(None, f"{stored} entries stored, the head counts {hd.entry_count}", walked)
    through = (hd.last_id, hd.entry_count, hd.last_hash) if walked or full or start.after_id == 0 else None
    return Verdict(True, walked, hd.entry_count, full=full, through=through)


def _stored(conn: Connection, last_id: int) -> int:
    query = select(func.count()).select_from(audit_log).where(audit_log.c.id <= last_id)
    return int(conn.execute(query).scalar_one())


def save_checkpoint(conn: Connection, verdict: Verdict, now: datetime) -> None:
    """Remember (sealed) how far the chain was found intact; never moves it backwards."""
    if not verdict.intact or verdict.through is None:
        return
    checked_id, checked_count, checked_hash = verdict.through
    at = now.astimezone(UTC)
    mac = checkpoint_mac(
        key_for(conn.engine),
        checked_id=checked_id,
        checked_count=checked_count,
        checked_hash=checked_hash,
        at=at,
    )
    conn.execute(
        update(audit_head)
        .where(audit_head.c.id == 1, audit_head.c.checked_id <= checked_id)
        .values(
            checked_id=checked_id,
            checked_count=checked_count,
            checked_hash=checked_hash,
            checked_at=at,
            checked_mac=mac,
        )
    )


def first_altered(conn: Connection, items: list[dict[str, Any]]) -> int | None:
    """The smallest id among these entries whose own hash does not match its content."""
    if not items:
        return None
    key, legacy = key_for(conn.engine), _head_row(conn).legacy_last_id
    rows = [_ItemRow(*(item[name] for name in _ItemRow._fields)) for item in items]
    bad = [row.id for row in rows if row.hash != _digest_of(key, legacy, row)]
    return min(bad) if bad else None


class _ItemRow(NamedTuple):
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    details: Any
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Anchor:
    """A head exported earlier (`GET /v1/audit/head`, `omnicrm audit head`), or just its hash."""

    hash: str
    last_id: int | None = None
    count: int | None = None


def parse_anchor(text: str) -> Anchor:
    """A 64-hex hash, or the JSON the head export prints; ValueError otherwise."""
    text = text.strip()
    if text.startswith("{"):
        data = orjson.loads(text)
        anchor = Anchor(str(data["hash"]), _whole(data.get("last_id")), _whole(data.get("count")))
    else:
        anchor = Anchor(text)
    if len(anchor.hash) != 64 or any(c not in "0123456789abcdef" for c in anchor.hash):
        raise ValueError(
            "an anchor is a 64-character lowercase hex hash, or the JSON of `omnicrm audit head`"
        )
    return anchor


def _whole(value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise ValueError("an anchor's last_id and count are whole numbers")


def anchor_problem(conn: Connection, anchor: Anchor) -> str | None:
    """Why the anchored head is no longer a prefix of the chain, or None when it still is: its
    entry is in place with the same hash, and as many entries lead up to it as when exported."""
    if anchor.hash == GENESIS:
        return None if not anchor.count else "the anchor names the empty log but counts entries"
    query = select(audit_log.c.id, audit_log.c.hash)
    if anchor.last_id is not None:
        query = query.where(audit_log.c.id == anchor.last_id)
    else:
        query = query.where(audit_log.c.hash == anchor.hash).order_by(audit_log.c.id).limit(1)
    row = conn.execute(query).first()
    if row is None or row.hash != anchor.hash:
        return "the anchored entry is no longer in the log with that hash"
    if anchor.count is not None and (stored := _stored(conn, row.id)) != anchor.count:
        return f"{stored} entries lead up to the anchored entry, the anchor counts {anchor.count}"
    return None


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
