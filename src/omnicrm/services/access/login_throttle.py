"""Throttled logins: a user name or a client address that failed too often is locked for a while.

The records live in the database (`store/login_throttle.py`), so every API worker and host counts
together. An attempt is claimed - counted as a failure, in its own short transaction - before any
Argon2 work: a locked name or address is refused without hashing, and concurrent attempts cannot
run past the limit while a hash is computed. A success resets the name and takes its count back
from the address. Only the lock-out is audited, never each failed attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from sqlalchemy.engine import Connection

from omnicrm.domain import login_throttle as rules
from omnicrm.domain.login_throttle import ADDRESS, NAME, Policy, Record
from omnicrm.store import audit
from omnicrm.store import login_throttle as records

Network = IPv4Network | IPv6Network
_IPV6_PREFIX = 64  # one IPv6 host usually holds a whole /64: counting single addresses would be void


class LoginThrottled(Exception):
    """Too many failed logins for this user name or address: retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Claim:
    """One login attempt, already counted as a failure: the records before and after it."""

    name: str
    address: str
    before: dict[records.Key, Record]
    after: dict[records.Key, Record]

    @property
    def keys(self) -> tuple[records.Key, records.Key]:
        return (NAME, self.name), (ADDRESS, self.address)

    @property
    def locked(self) -> list[records.Key]:
        """The names and addresses this attempt locked (each lock-out is audited once)."""
        return [
            key
            for key in self.keys
            if self.after[key].locked_until not in (None, self.before[key].locked_until)
        ]


def client_address(peer: str | None, forwarded_for: str | None, trusted: list[Network]) -> str:
    """The address to count a login against: the peer, or - when the peer is a trusted proxy - the
    nearest address in X-Forwarded-For that is not one (the client cannot forge the hops after it)."""
    client = _ip(peer)
    if client is None:
        return (peer or "unknown")[: rules.VALUE_MAX]
    hops = (forwarded_for or "").split(",")
    while hops and any(client in network for network in trusted):
        hop = _ip(hops.pop())
        if hop is None:
            break
        client = hop
    if isinstance(client, IPv6Address) and client.ipv4_mapped is None:
        return str(ip_network(f"{client}/{_IPV6_PREFIX}", strict=False))
    return str(client.ipv4_mapped if isinstance(client, IPv6Address) else client)


def _ip(text: str | None) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address((text or "").strip())
    except ValueError:
        return None


def claim(conn: Connection, *, username: str, address: str, limits: Policy, now: datetime) -> Claim:
    """Count this attempt as a failure of its name and address (forgotten records pruned first);
    raises LoginThrottled, changing nothing, when either is locked."""
    records.prune(conn, now)
    name = rules.name_key(username)
    keys = ((NAME, name), (ADDRESS, address))
    before = records.hold(conn, keys, now)
    waits = [wait for key in keys if (wait := rules.remaining(before[key], now)) is not None]
    if waits:
        raise LoginThrottled(rules.retry_after(max(waits)))
    after = {key: rules.counted(before[key], limits.limit(key[0]), limits, now) for key in keys}
    for key in keys:
        records.save(conn, key, after[key], rules.forget_at(after[key], limits, now))
    return Claim(name, address, before, after)


def succeeded(conn: Connection, attempt: Claim, *, limits: Policy, now: datetime) -> None:
    """The password was right: the name starts from zero, the address gets its failure back."""
    name_key, address_key = attempt.keys
    current = records.hold(conn, [address_key], now)[address_key]  # rows are locked address first
    records.remove(conn, name_key)
    forgiven = rules.forgive(current, attempt.before[address_key], attempt.after[address_key])
    if forgiven == Record():
        records.remove(conn, address_key)
    else:
        records.save(conn, address_key, forgiven, rules.forget_at(forgiven, limits, now))


def failed(conn: Connection, attempt: Claim, *, now: datetime) -> None:
    """The password was wrong (already counted): audit each lock-out this attempt caused, once."""
    for kind, value in attempt.locked:
        after = attempt.after[(kind, value)]
        assert after.locked_until is not None
        details = {
            "locked": kind,
            "attempts": after.failures,
            "address": attempt.address,
            "seconds": round((after.locked_until - now).total_seconds()),
        }
        audit.append(
            conn, at=now, actor=attempt.name, action="auth.locked_out", target=value, details=details
        )
