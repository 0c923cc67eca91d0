"""When failed logins lock a user name or a client address, and for how long.

Pure rules (no clock, no storage): the service passes `now` and the stored records. An attempt is
counted as a failure before its password is checked, so that concurrent attempts cannot slip past
the limit while Argon2 runs; a success then takes its count back (`forgive`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from omnicrm.domain.pan import contains_pan, mask

NAME = "name"
ADDRESS = "address"
VALUE_MAX = 64  # user names are at most 64 characters: a longer one can only be a wrong guess
_MAX_DOUBLINGS = 40  # beyond this the cap has long been reached; keeps 2**n small


@dataclass(frozen=True, slots=True)
class Policy:
    """Failures allowed per user name and per address before a lock, the first lock (doubled by every
    further failure, up to `lock_max`), and how long after its last failure or lock a record lives."""

    per_name: int
    per_address: int
    lock: timedelta
    lock_max: timedelta
    forget: timedelta

    def limit(self, kind: str) -> int:
        return self.per_name if kind == NAME else self.per_address


@dataclass(frozen=True, slots=True)
class Record:
    """Failures counted for one name or address since it was last forgotten or reset, and its lock."""

    failures: int = 0
    locked_until: datetime | None = None


def name_key(username: str) -> str:
    """The user name as the throttle and the audit log may keep it: never a card number (masked),
    never longer than any real user name."""
    safe = mask(username) if contains_pan(username) else username
    return safe[:VALUE_MAX]


def remaining(record: Record, now: datetime) -> timedelta | None:
    """How long the record stays locked (None: it is not)."""
    if record.locked_until is None or record.locked_until <= now:
        return None
    return record.locked_until - now


def retry_after(wait: timedelta) -> int:
    """Whole seconds for a `Retry-After` header: rounded up, at least one."""
    return max(1, math.ceil(wait.total_seconds()))


def counted(record: Record, limit: int, policy: Policy, now: datetime) -> Record:
    """The record with one more failure; from `limit` failures on, each one locks it, the lock
    doubling every time up to the cap."""
    failures = record.failures + 1
    if failures < limit:
        return Record(failures, record.locked_until)
    lock = min(policy.lock * 2 ** min(failures - limit, _MAX_DOUBLINGS), policy.lock_max)
    return Record(failures, now + lock)


def forgive(current: Record, before: Record, claimed: Record) -> Record:
    """The record once an attempt counted as a failure turned out to succeed: one failure fewer, and
    the lock that attempt set lifted (unless another has replaced it since)."""
    unlocked = before.locked_until if current.locked_until == claimed.locked_until else current.locked_until
    return Record(max(current.failures - 1, 0), unlocked)


def forget_at(record: Record, policy: Policy, now: datetime) -> datetime:
    """When the record may be pruned: `forget` after its last failure or the end of its lock."""
    latest = max(now, record.locked_until) if record.locked_until else now
    return latest + policy.forget
