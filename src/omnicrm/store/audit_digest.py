"""How audit entries, the head and the checkpoint are sealed: HMAC-SHA256 under the audit key over a
canonical JSON list, each kind with its own first word so that one can never pass for another.

Entries written before migration 0006 keep the plain SHA-256 of the old format (`legacy_digest`);
they are sealed all the same, since the first keyed entry (or the head) covers the last of them."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

import orjson

GENESIS = "0" * 64
_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _seal(key: bytes, parts: list[Any]) -> str:
    return hmac.digest(key, orjson.dumps(parts, option=_CANONICAL), "sha256").hex()


def same(a: str | None, b: str) -> bool:
    """Constant-time comparison, so that a MAC cannot be guessed byte by byte."""
    return a is not None and hmac.compare_digest(a, b)


def entry_digest(
    key: bytes,
    prev: str,
    entry_id: int,
    at: datetime,
    actor: str,
    action: str,
    target: str | None,
    details: Any,
) -> str:
    """An entry's hash: its id and content, chained to the previous hash, under the key."""
    return _seal(key, ["entry", prev, entry_id, at.isoformat(), actor, action, target, details])


def legacy_digest(prev: str, at: datetime, actor: str, action: str, target: str | None, details: Any) -> str:
    """The unkeyed hash of entries written before the key (migration 0006)."""
    body = orjson.dumps([prev, at.isoformat(), actor, action, target, details], option=_CANONICAL)
    return hashlib.sha256(body).hexdigest()


def head_mac(
    key: bytes,
    *,
    last_id: int,
    entry_count: int,
    last_hash: str,
    at: datetime | None,
    legacy_last_id: int,
    tampered_since: int | None,
) -> str:
    """The head's seal: where the chain ends and how many entries it holds."""
    when = at.isoformat() if at is not None else None
    return _seal(key, ["head", last_id, entry_count, last_hash, when, legacy_last_id, tampered_since])


def checkpoint_mac(
    key: bytes, *, checked_id: int, checked_count: int, checked_hash: str, at: datetime
) -> str:
    """The seal of the last point a verification found intact."""
    return _seal(key, ["checkpoint", checked_id, checked_count, checked_hash, at.isoformat()])
